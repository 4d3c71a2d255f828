"""ONNX LSTM, GRU and RNN against onnxruntime through a real fp32 .tflite, with the ops they become.

onnxruntime refuses layout=1 (batch-major) recurrences, so a layout-1 model is checked
against its layout-0 twin (same weights) on transposed inputs, outputs transposed back.
Each converted model is invoked twice in one interpreter, on different inputs: the fused
LSTM kernel writes its final state into its state tensors, and a second run must not
start from the first one's state. Values are N(0, 0.5) weights over at most 6 steps,
so fp32 agrees to far better than the 1e-4 asked for here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
from onnx import helper
from onnx_harness import convert, make_model, random_feeds, rejection, run_ort

from buildsys.tflow.inspect import op_histogram
from buildsys.tflow.runtime import io_details, load_interpreter, quantize_input
from buildsys.tflow.samples import to_onnx_layout, to_stored

T, B, IN, H = 5, 2, 3, 4
TOL = 1e-4
GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
FUSED = "UNIDIRECTIONAL_SEQUENCE_LSTM"
PRIMITIVE = {"LOGISTIC", "TANH", "FULLY_CONNECTED"}  # what an unrolled cell is made of


@dataclass
class Recurrent:
    """One recurrent node's model: which inputs and outputs it has, and its weights."""

    op: str
    direction: str = "forward"
    layout: int = 0
    init: bool = False  # initial_h (and initial_c) as graph inputs
    outputs: tuple[str, ...] = ("Y", "Y_h")
    attrs: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)  # input index -> constant array (P, sequence_lens)
    seed: int = 0

    @property
    def dirs(self) -> int:
        return 2 if self.direction == "bidirectional" else 1

    def weights(self) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(self.seed)
        g = GATES[self.op] * H
        shapes = {"W": (self.dirs, g, IN), "R": (self.dirs, g, H), "B": (self.dirs, 2 * g)}
        return {n: (0.5 * rng.standard_normal(s)).astype(np.float32) for n, s in shapes.items()}

    def model(self, layout: int | None = None):
        layout = self.layout if layout is None else layout
        seq = [T, B, IN] if layout == 0 else [B, T, IN]
        state = [self.dirs, B, H] if layout == 0 else [B, self.dirs, H]
        inputs, inits = {"X": seq}, self.weights()
        names = ["X", "W", "R", "B", "", ""]
        if self.init:
            names[5] = "h0"
            inputs["h0"] = state
            if self.op == "LSTM":
                names.append("c0")
                inputs["c0"] = state
        for index, value in self.extra.items():
            names += [""] * (index + 1 - len(names))
            names[index] = f"in{index}"
            inits[f"in{index}"] = value
        wanted = ["Y", "Y_h", "Y_c"][: 3 if self.op == "LSTM" else 2]
        outs = [o if o in self.outputs else "" for o in wanted]
        while not outs[-1]:
            outs.pop()
        attrs = dict(hidden_size=H, direction=self.direction, **self.attrs)
        if layout:
            attrs["layout"] = 1
        node = helper.make_node(self.op, names, outs, name=f"{self.op.lower()}_node", **attrs)
        return make_model([node], inputs, [o for o in outs if o], inits, opset=14)


LAYOUT1 = {"X": (1, 0, 2), "h0": (1, 0, 2), "c0": (1, 0, 2), "Y": (2, 0, 1, 3), "Y_h": (1, 0, 2), "Y_c": (1, 0, 2)}


def reference(spec: Recurrent, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """onnxruntime's outputs for `spec` in its own layout."""
    if spec.layout == 0:
        return run_ort(spec.model(), feeds)
    # layout 1 -> 0 moves axes with these perms; back again with their inverses
    twin = {n: np.transpose(v, np.argsort(LAYOUT1[n])) for n, v in feeds.items()}
    return {n: np.transpose(v, LAYOUT1[n]) for n, v in run_ort(spec.model(0), twin).items()}


def run_twice(conv, first: dict, second: dict) -> dict[str, np.ndarray]:
    """Invoke one interpreter on `first`, then `second`; the second run's outputs."""
    runner = load_interpreter(conv.tflite).get_signature_runner("serving_default")
    runner(**to_stored(first, conv.signature.inputs))
    outs = runner(**to_stored(second, conv.signature.inputs))
    return to_onnx_layout({k: np.asarray(v) for k, v in outs.items()}, conv.signature.outputs)


def verify(spec: Recurrent):
    """Convert `spec`'s model to .tflite and compare with onnxruntime; returns the conversion."""
    model = spec.model()
    first, second = random_feeds(model, seed=1), random_feeds(model, seed=2)
    conv = convert(model)
    got, want = run_twice(conv, first, second), reference(spec, second)
    assert sorted(got) == sorted(want)
    for name, value in want.items():
        assert got[name].shape == value.shape, name
        np.testing.assert_allclose(got[name], value, rtol=TOL, atol=TOL, err_msg=name)
    return conv


def fc_count(spec: Recurrent, per_step: int) -> int:
    """FULLY_CONNECTED ops of the primitive form: one input projection per direction, then
    `per_step` recurrent products per step (none on the first step from a zero state)."""
    recurrent_steps = T if spec.init else T - 1
    return spec.dirs * (1 + per_step * recurrent_steps)


DIRECTIONS = ["forward", "reverse", "bidirectional"]
OUTPUT_SETS = [("Y", "Y_h"), ("Y",), ("Y_h",)]


def grid():
    """direction x layout x initial state, with the output subset varying across cases."""
    combos = [(d, lay, i) for d in DIRECTIONS for lay in (0, 1) for i in (False, True)]
    cases = []
    for k, (direction, layout, init) in enumerate(combos):
        outputs = OUTPUT_SETS[k % 3]
        name = f"{direction}-L{layout}-init{int(init)}-{'+'.join(outputs)}"
        cases.append(pytest.param(direction, layout, init, outputs, id=name))
    return cases


# -- LSTM --------------------------------------------------------------------------
@pytest.mark.parametrize("direction, layout, init, outputs", grid())
def test_lstm_is_fused(direction, layout, init, outputs):
    spec = Recurrent("LSTM", direction, layout, init, outputs)
    conv = verify(spec)
    assert conv.ops.get(FUSED) == spec.dirs, conv.ops
    assert not PRIMITIVE & set(conv.ops), conv.ops


@pytest.mark.parametrize("direction, layout", [("forward", 0), ("reverse", 1), ("bidirectional", 0)])
@pytest.mark.parametrize("init", [False, True])
def test_lstm_cell_state_output_is_primitive(direction, layout, init):
    """The fused kernel outputs only Y: a used Y_c takes the exact primitive form."""
    spec = Recurrent("LSTM", direction, layout, init, ("Y", "Y_h", "Y_c"), seed=3)
    conv = verify(spec)
    assert FUSED not in conv.ops
    assert conv.ops["FULLY_CONNECTED"] == fc_count(spec, 1), conv.ops


@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
def test_lstm_peepholes_are_primitive(direction):
    spec = Recurrent("LSTM", direction, init=True, outputs=("Y", "Y_h", "Y_c"))
    peep = np.random.default_rng(4).standard_normal((spec.dirs, 3 * H)).astype(np.float32)
    spec.extra = {7: peep}
    conv = verify(spec)
    assert FUSED not in conv.ops


def test_lstm_named_but_unread_cell_state_stays_fused():
    """A Y_c output that no node reads and the graph does not return is not "used"."""
    weights = Recurrent("LSTM").weights()
    node = helper.make_node("LSTM", ["X", "W", "R", "B"], ["Y", "", "Y_c"], hidden_size=H)
    model = make_model([node], {"X": [T, B, IN]}, ["Y"], weights, opset=14)
    feeds = random_feeds(model, seed=1)
    conv = convert(model)
    np.testing.assert_allclose(conv.run(feeds)["Y"], run_ort(model, feeds)["Y"], rtol=TOL, atol=TOL)
    assert conv.ops.get(FUSED) == 1, conv.ops


def test_lstm_zero_peepholes_stay_fused():
    spec = Recurrent("LSTM", extra={7: np.zeros((1, 3 * H), np.float32)})
    assert verify(spec).ops.get(FUSED) == 1


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_clip(op):
    conv = verify(Recurrent(op, "bidirectional", init=True, attrs={"clip": 0.7}))
    assert FUSED not in conv.ops and "MINIMUM" in conv.ops


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_full_constant_sequence_lens_and_default_activations_spelt_out(op):
    acts = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"], "RNN": ["Tanh"]}[op]
    spec = Recurrent(op, "bidirectional", attrs={"activations": acts * 2}, extra={4: np.full(B, T, np.int32)})
    verify(spec)


def test_lstm_constant_initial_state():
    spec = Recurrent("LSTM", "bidirectional")
    rng = np.random.default_rng(5)
    spec.extra = {k: rng.standard_normal((2, B, H)).astype(np.float32) for k in (5, 6)}
    assert verify(spec).ops.get(FUSED) == 2


def test_fused_lstm_cell_state_is_not_clipped():
    """The converter gives the fused kernel cell_clip=10; ONNX has no such clip. Here the
    cell state counts up to 15 (input, forget and candidate gates saturated) and decays
    back: with the clip, Y differs by 0.9 on the last steps."""
    steps = 20
    w = np.array([[[0.0], [0.0], [20.0], [20.0]]], np.float32)  # gates i, o, f, c
    bias = np.zeros((1, 8), np.float32)
    bias[0, :3] = [20.0, 20.0, 20.7]
    inits = {"W": w, "R": np.zeros((1, 4, 1), np.float32), "B": bias}
    node = helper.make_node("LSTM", ["X", "W", "R", "B"], ["Y"], hidden_size=1)
    model = make_model([node], {"X": [steps, 1, 1]}, ["Y"], inits, opset=14)
    x = np.concatenate([np.ones(15), -np.ones(5)]).astype(np.float32).reshape(steps, 1, 1)
    conv = convert(model)
    assert conv.ops.get(FUSED) == 1, conv.ops
    np.testing.assert_allclose(conv.run({"X": x})["Y"], run_ort(model, {"X": x})["Y"], rtol=TOL, atol=TOL)


def test_two_stacked_bidirectional_lstms():
    """A CRNN-style stack: Y [T, 2, B, H] -> [T, B, 2H] feeds the second LSTM."""
    rng = np.random.default_rng(6)

    def weights(prefix, inputs):
        return {f"{prefix}{n}": (0.5 * rng.standard_normal(s)).astype(np.float32)
                for n, s in {"W": (2, 4 * H, inputs), "R": (2, 4 * H, H), "B": (2, 8 * H)}.items()}  # fmt: skip

    inits = {**weights("a", IN), **weights("b", 2 * H), "shape": np.array([T, B, 2 * H], np.int64)}
    nodes = [
        helper.make_node("LSTM", ["X", "aW", "aR", "aB"], ["y1"], hidden_size=H, direction="bidirectional"),
        helper.make_node("Transpose", ["y1"], ["t1"], perm=[0, 2, 1, 3]),
        helper.make_node("Reshape", ["t1", "shape"], ["r1"]),
        helper.make_node("LSTM", ["r1", "bW", "bR", "bB"], ["Y", "Y_h"], hidden_size=H, direction="bidirectional"),
    ]
    model = make_model(nodes, {"X": [T, B, IN]}, ["Y", "Y_h"], inits, opset=14)
    feeds = random_feeds(model, seed=7)
    conv = convert(model)
    got, want = conv.run(feeds), run_ort(model, feeds)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=TOL, atol=TOL, err_msg=name)
    assert conv.ops.get(FUSED) == 4, conv.ops
    assert not PRIMITIVE & set(conv.ops), conv.ops


# -- GRU and RNN -------------------------------------------------------------------
@pytest.mark.parametrize("direction, layout, init, outputs", grid())
@pytest.mark.parametrize("lbr", [0, 1])
def test_gru(direction, layout, init, outputs, lbr):
    spec = Recurrent("GRU", direction, layout, init, outputs, attrs={"linear_before_reset": lbr})
    conv = verify(spec)
    # linear_before_reset=0 multiplies r * h before the candidate's product: two per step
    assert conv.ops["FULLY_CONNECTED"] == fc_count(spec, 1 if lbr else 2), conv.ops
    assert FUSED not in conv.ops and "WHILE" not in conv.ops


@pytest.mark.parametrize("direction, layout, init, outputs", grid())
def test_rnn(direction, layout, init, outputs):
    spec = Recurrent("RNN", direction, layout, init, outputs)
    conv = verify(spec)
    assert conv.ops["FULLY_CONNECTED"] == fc_count(spec, 1), conv.ops
    assert conv.ops["TANH"] == spec.dirs * T, conv.ops


# -- refusals ----------------------------------------------------------------------
REFUSED = [
    (Recurrent("LSTM", attrs={"activations": ["Sigmoid", "Relu", "Tanh"]}), "activations"),
    (Recurrent("GRU", attrs={"activations": ["HardSigmoid", "Tanh"]}), "activations"),
    (Recurrent("RNN", attrs={"activations": ["Relu"]}), "activations"),
    (Recurrent("LSTM", attrs={"input_forget": 1}), "input_forget"),
    (Recurrent("GRU", extra={4: np.array([T, T - 1], np.int32)}), "sequence_lens"),
]


@pytest.mark.parametrize("spec, word", REFUSED, ids=lambda v: v if isinstance(v, str) else v.op)
def test_refused_with_a_reason(spec, word):
    assert word in rejection(spec.model())


@pytest.mark.parametrize("op", ["LSTM", "GRU", "RNN"])
def test_computed_weights_are_refused(op):
    spec = Recurrent(op)
    g = GATES[op] * H
    node = helper.make_node(op, ["X", "W", "R"], ["Y"], hidden_size=H)
    model = make_model([node], {"X": [T, B, IN], "W": [1, g, IN]}, ["Y"], {"R": spec.weights()["R"]}, opset=14)
    assert "W" in rejection(model) and "constant" in rejection(model)


def test_computed_sequence_lens_are_refused():
    node = helper.make_node("RNN", ["X", "W", "R", "", "lens"], ["Y"], hidden_size=H)
    inputs = {"X": [T, B, IN], "lens": ([B], np.int32)}
    weights = Recurrent("RNN").weights()
    model = make_model([node], inputs, ["Y"], {"W": weights["W"], "R": weights["R"]}, opset=14)
    assert "sequence_lens" in rejection(model)


def test_fused_lstm_model_bytes_are_reproducible():
    """The fused route keeps a function library in the float model: its bytes, and the
    .tflite's, must still depend only on the model (content-hash cache)."""
    model = Recurrent("LSTM", "bidirectional").model()
    first, second = convert(model), convert(model)
    assert first.tflite == second.tflite
    assert first.ops.get(FUSED) == 2


# -- int8 --------------------------------------------------------------------------
def int8_conversion(spec: Recurrent) -> tuple[bytes, dict[str, float]]:
    """cpu-int8 (int8 IO) from random calibration; the .tflite and cosine per output."""
    import tempfile
    from pathlib import Path

    from buildsys.tflow.onnxsource import export_onnx
    from buildsys.tflow.quantize import to_tflite

    model = spec.model(0)
    rng = np.random.default_rng(8)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "float.pb"
        signature = export_onnx(model, path)
        # samples are stacked along the first model dim (T for layout 0)
        calib = {i.name: rng.standard_normal([16 * i.shape[0], *i.shape[1:]]).astype(np.float32)
                 for i in signature.inputs}  # fmt: skip
        data = to_tflite(path, signature, "int8", calib=calib)
    feeds = random_feeds(model, seed=9)
    got, want = run_int8(data, feeds), run_ort(model, feeds)
    cosine = {n: float(np.dot(got[n].ravel(), w.ravel()) / np.linalg.norm(got[n]) / np.linalg.norm(w))
              for n, w in want.items()}  # fmt: skip
    return data, cosine


def run_int8(data: bytes, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One invocation on whole arrays (run_tflite would split X along T as samples); float out."""
    interpreter = load_interpreter(data)
    ins, outs = io_details(interpreter)
    raw = interpreter.get_signature_runner("serving_default")(
        **{n: quantize_input(feeds[n], d) for n, d in ins.items()}
    )
    result = {}
    for name, details in outs.items():
        scale, zero_point = details["quantization"]
        result[name] = (raw[name].astype(np.float32) - zero_point) * scale if scale else raw[name]
    return result


def test_fused_lstm_is_all_int8():
    """The fused kernel quantizes as a whole: no float island (DEQUANTIZE) in the graph."""
    data, cosine = int8_conversion(Recurrent("LSTM", "bidirectional"))
    ops = op_histogram(data)
    assert ops.get(FUSED) == 2 and "DEQUANTIZE" not in ops, ops
    assert min(cosine.values()) > 0.9, cosine


def test_primitive_lstm_keeps_int8_outputs():
    """Y_h is read back from Y, so TF's quantizer gives it an int8 type like Y's."""
    data, cosine = int8_conversion(Recurrent("LSTM", outputs=("Y", "Y_h", "Y_c")))
    assert FUSED not in op_histogram(data)
    assert min(cosine.values()) > 0.9, cosine


@pytest.mark.parametrize("lbr", [0, 1])
def test_gru_is_all_int8(lbr):
    """No float island: the first step from a zero state splits no unread reset gate."""
    data, cosine = int8_conversion(Recurrent("GRU", "bidirectional", attrs={"linear_before_reset": lbr}))
    assert "DEQUANTIZE" not in op_histogram(data), op_histogram(data)
    assert min(cosine.values()) > 0.9, cosine
