"""Take the cell clip out of the fused LSTMs the TFLite converter writes.

The converter turns a Keras-LSTM function (how buildsys emits an ONNX LSTM) into
UNIDIRECTIONAL_SEQUENCE_LSTM with a fixed cell_clip of 10 (lstm_utils.cc,
ConvertKerasLSTMLayer), so the kernel clamps the cell state to [-10, 10]. ONNX LSTM
(without `clip`) and Keras do not: once |c| passes 10, later steps differ (0.9 in Y
on a 20-step sequence that counts up to 15 and back). A clip of 0 means none to the
kernel (float and integer alike), and the option is a float stored in place in the
flatbuffer, so zeroing those four bytes changes nothing else in the file.

Pure flatbuffer reading through tflschema: no TensorFlow import.
"""

from __future__ import annotations

import struct

from buildsys.tflow.tflschema import schema

_CELL_CLIP_FIELD = 6  # vtable offset of UnidirectionalSequenceLSTMOptions.cell_clip (field 1)


def unclipped(data: bytes) -> bytes:
    """`data` with every UNIDIRECTIONAL_SEQUENCE_LSTM's stored cell_clip set to 0."""
    offsets = list(_cell_clip_offsets(data))
    if not offsets:
        return data
    out = bytearray(data)
    for offset in offsets:
        struct.pack_into("<f", out, offset, 0.0)
    return bytes(out)


def _cell_clip_offsets(data: bytes):
    s = schema()
    root = s.Model.GetRootAsModel(data, 0)
    lstm = {
        i
        for i in range(root.OperatorCodesLength())
        if max(root.OperatorCodes(i).BuiltinCode(), root.OperatorCodes(i).DeprecatedBuiltinCode())
        == s.BuiltinOperator.UNIDIRECTIONAL_SEQUENCE_LSTM
    }
    for g in range(root.SubgraphsLength()):
        graph = root.Subgraphs(g)
        for k in range(graph.OperatorsLength()):
            op = graph.Operators(k)
            table = op.BuiltinOptions() if op.OpcodeIndex() in lstm else None
            if table is None or op.BuiltinOptionsType() != s.BuiltinOptions.UnidirectionalSequenceLSTMOptions:
                continue
            field = table.Offset(_CELL_CLIP_FIELD)
            if field:  # 0: not stored, the default clip of 0 already
                yield table.Pos + field
