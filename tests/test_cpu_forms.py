"""Op forms the CPU profiles ask for because XNNPACK runs them fast (tflow/hardact.py,
tflow/groupedconv.py): same numbers as the default forms, fewer slow kernels."""

from __future__ import annotations

import tempfile
from pathlib import Path

import archs
import pytest
from test_fusions import cosine, int8_build, int8_run

from buildsys.signature import Signature


def fp32_build(m, *forms: str) -> tuple[bytes, Signature]:
    from buildsys.onnxprep.prepare import prepare_model
    from buildsys.tflow.onnxsource import export_onnx
    from buildsys.tflow.quantize import to_tflite

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "float.pb"
        sig = export_onnx(prepare_model(m), path)
        return to_tflite(path, sig, "none", forms=forms), sig


def ops(data: bytes) -> dict[str, int]:
    from buildsys.tflow.inspect import op_histogram

    return op_histogram(data)


@pytest.fixture(scope="module")
def regnet():
    return archs.regnet_x()


@pytest.fixture(scope="module")
def mobilenet():
    return archs.mobilenet_v3_small(size=64, width=0.5)


def onnx_count(m, op_type: str, **attr) -> int:
    from onnx import helper

    return sum(
        n.op_type == op_type
        and all(helper.get_attribute_value(a) == attr[a.name] for a in n.attribute if a.name in attr)
        for n in m.graph.node
    )


# -- grouped convolutions ---------------------------------------------------------------------------
def test_grouped_conv_default_is_one_conv_per_group(regnet):
    """The form for NPUs (no grouped CONV_2D there): what every profile without `grouped_conv` gets."""
    have = ops(fp32_build(regnet)[0])
    assert have.get("SPLIT", 0) == 4 and have.get("CONCATENATION", 0) == 4, have


def test_grouped_conv_fp32_is_one_op_and_exact(regnet):
    from buildsys.tflow.runtime import run_tflite
    from buildsys.tflow.samples import to_onnx_layout, to_stored

    data, sig = fp32_build(regnet, "grouped_conv")
    have = ops(data)
    assert "SPLIT" not in have and "CONCATENATION" not in have, have
    assert have["CONV_2D"] == onnx_count(regnet, "Conv"), have
    feeds = archs.sample_inputs(regnet, 2, seed=3)
    got = to_onnx_layout(run_tflite(data, to_stored(feeds, sig.inputs)), sig.outputs)
    archs.assert_fp32_matches("regnet_x grouped", got, archs.run_ort(regnet, feeds))


def test_grouped_conv_int8_is_one_op_as_accurate_as_the_split_form(regnet):
    calib, feeds = archs.sample_inputs(regnet, 8, seed=100), archs.sample_inputs(regnet, 4, seed=7)
    want = archs.run_ort(regnet, feeds)["logits"].reshape(-1)
    split, sig = int8_build(regnet, calib)
    grouped, _ = int8_build(regnet, calib, "grouped_conv")
    assert "SPLIT" not in ops(grouped) and ops(split).get("SPLIT") == 4
    got = {
        name: cosine(want, int8_run(d, sig, feeds)["logits"].reshape(-1))
        for name, d in (("split", split), ("grouped", grouped))
    }
    print("regnet_x int8 cosine vs onnxruntime:", got)
    assert got["grouped"] > 0.99 and abs(got["grouped"] - got["split"]) < 2e-3, got


# -- HardSwish, HardSigmoid ---------------------------------------------------------------------------
def test_hard_activations_int8_without_hard_swish_or_minimum_and_as_accurate(mobilenet):
    calib, feeds = archs.sample_inputs(mobilenet, 8, seed=100), archs.sample_inputs(mobilenet, 4, seed=7)
    want = archs.run_ort(mobilenet, feeds)["logits"].reshape(-1)
    fused, sig = int8_build(mobilenet, calib)
    split, _ = int8_build(mobilenet, calib, "split_hard_activations")
    hardswish = onnx_count(mobilenet, "HardSwish")
    assert ops(fused).get("HARD_SWISH") == hardswish and hardswish > 5
    assert ops(fused).get("MINIMUM") == onnx_count(mobilenet, "HardSigmoid") > 0
    assert "HARD_SWISH" not in ops(split) and "MINIMUM" not in ops(split)
    assert ops(split)["MUL"] >= ops(fused).get("MUL", 0) + 2 * hardswish, ops(split)
    got = {
        name: cosine(want, int8_run(d, sig, feeds)["logits"].reshape(-1))
        for name, d in (("fused", fused), ("split", split))
    }
    print("mobilenet_v3_small int8 cosine vs onnxruntime:", got)
    assert got["split"] > 0.95 and got["split"] > got["fused"] - 5e-3, got


def test_hard_activation_forms_are_exact_in_float(mobilenet):
    from buildsys.tflow.runtime import run_tflite
    from buildsys.tflow.samples import to_onnx_layout, to_stored

    data, sig = fp32_build(mobilenet, "split_hard_activations")
    assert "HARD_SWISH" not in ops(data) and "MINIMUM" not in ops(data)
    feeds = archs.sample_inputs(mobilenet, 2, seed=3)
    got = to_onnx_layout(run_tflite(data, to_stored(feeds, sig.inputs)), sig.outputs)
    archs.assert_fp32_matches("mobilenet_v3_small split", got, archs.run_ort(mobilenet, feeds))


def test_hard_activation_lookalikes_are_left_alone():
    """x * relu6(y + 3) / 6 with y != x is not a HardSwish: the graph stays as it is."""
    import tensorflow as tf

    from buildsys.tflow.hardact import split_hard_activations

    @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32)] * 2)
    def f(x, y):
        return (
            x * tf.nn.relu6(y + 3.0) * (1.0 / 6.0),
            x * tf.nn.relu6(x + 2.0) * (1.0 / 6.0),
            tf.minimum(tf.maximum(x * 0.2 + 0.5, 0.0), 2.0),
            tf.minimum(tf.maximum(x * y + 0.5, 0.0), 1.0),
        )

    assert split_hard_activations(f.get_concrete_function().graph.as_graph_def()) is None

    @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32)])
    def g(x):
        return tf.minimum(tf.maximum(x * 0.2 + 0.5, 0.0), 1.0)

    assert split_hard_activations(g.get_concrete_function().graph.as_graph_def()) is not None


# -- which profile gets which form ------------------------------------------------------------------
@pytest.mark.parametrize(
    "name,forms",
    [
        ("cpu-int8", ("unfold_batchmatmul", "split_hard_activations", "unfuse_lstm", "grouped_conv")),
        ("cpu-fp32", ("grouped_conv",)),
        ("cpu-int16x8", ("grouped_conv",)),
        ("cpu-fp16", ("grouped_conv",)),
        ("cpu-dynamic-range", ("grouped_conv",)),
        ("tflm-int8", ("unfold_batchmatmul",)),
        ("ethos-u55-128", ()),
        ("axis-artpec8", ()),
        ("coral-edgetpu", ()),
    ],
)
def test_profiles_ask_for_xnnpack_forms_only_on_the_cpu_interpreter(name, forms):
    from buildsys.devices.catalogue import Catalogue

    assert Catalogue().get(name).op_forms == forms


def test_a_profile_extending_cpu_int8_for_an_npu_can_turn_the_forms_off(tmp_path):
    from buildsys.devices.catalogue import Catalogue

    (tmp_path / "npu.yaml").write_text(
        "extends: cpu-int8\nquantization: {split_hard_activations: false, grouped_conv: false, unfuse_lstm: false}\n",
        "utf-8",
    )
    assert Catalogue(workspace=tmp_path).resolve("npu.yaml", tmp_path).op_forms == ("unfold_batchmatmul",)


# -- LSTM ----------------------------------------------------------------------------------------------
def test_lstm_int8_as_unrolled_cells_for_xnnpack():
    """cpu-int8 runs LSTMs as cells (XNNPACK has no LSTM kernel); other int8 profiles keep the fused op."""
    m = archs.crnn(hidden=32)
    calib, feeds = archs.recurrent_inputs("crnn", 8, seed=100), archs.recurrent_inputs("crnn", 4, seed=7)
    want = archs.run_ort(m, feeds)
    fused, sig = int8_build(m, calib)
    cells, _ = int8_build(m, calib, "unfuse_lstm")
    assert ops(fused).get("UNIDIRECTIONAL_SEQUENCE_LSTM") == 4
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" not in ops(cells) and {"FULLY_CONNECTED", "LOGISTIC", "TANH"} <= set(
        ops(cells)
    )
    got = {
        name: min(cosine(want[o].reshape(-1), out.reshape(-1)) for o, out in int8_run(d, sig, feeds).items())
        for name, d in (("fused", fused), ("cells", cells))
    }
    print("crnn int8 cosine vs onnxruntime:", got)
    assert got["cells"] > 0.95 and got["cells"] > got["fused"] - 5e-3, got
