"""Darknet cfg + weights: checked against OpenCV's own Darknet reader, and refused cleanly when bad."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from darknet_files import CFGS, CLASSIFIER, header, random_params, write_model, write_weights

from buildsys.darknet.cfg import parse, parse_text
from buildsys.darknet.describe import layer_table, model_outputs
from buildsys.darknet.weights import check_files, input_dims, parameter_count
from buildsys.errors import InputError

MAX_REL_ERR = 1e-4


def _run_ours(cfg: Path, weights: Path, image: np.ndarray) -> dict[str, np.ndarray]:
    from buildsys.tflow.darknet import load_source

    source = load_source(cfg, weights)
    return {name: t.numpy() for name, t in zip(source.outputs, source.call([image]))}


def _run_opencv(cfg: Path, weights: Path, image: np.ndarray, outputs: list[str]) -> dict[str, np.ndarray]:
    cv2 = pytest.importorskip("cv2")
    net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
    layers = [_opencv_layer(out, net) for out in outputs]
    known = set(net.getLayerNames())
    assert set(layers) <= known, f"OpenCV names its layers {sorted(known)}"
    net.setInput(image.transpose(0, 3, 1, 2))  # OpenCV takes NCHW blobs
    return dict(zip(outputs, net.forward(layers)))


def _opencv_layer(output: str, net) -> str:
    """OpenCV's name for the layer holding our output: the conv before a [yolo], else the last layer.

    OpenCV's own [yolo] layer decodes boxes, so the comparison reads what enters it."""
    if output.startswith("yolo_"):
        return f"conv_{int(output.removeprefix('yolo_')) - 1}"
    return net.getUnconnectedOutLayersNames()[0]


def _image(cfg: Path, seed: int = 1) -> np.ndarray:
    height, width, channels = input_dims(parse(cfg))
    return np.random.default_rng(seed).uniform(0.0, 1.0, (1, height, width, channels)).astype(np.float32)


def _compare(name: str, cfg: Path, weights: Path) -> dict[str, float]:
    image = _image(cfg)
    ours = _run_ours(cfg, weights, image)
    theirs = _run_opencv(cfg, weights, image, list(ours))
    errors = {}
    for out, value in ours.items():
        # ours is NHWC, OpenCV's NCHW (or [1, N] after a connected layer, the same order at 1x1)
        a, b = value.transpose(0, 3, 1, 2).ravel(), theirs[out].ravel()
        assert a.shape == b.shape, f"{name} {out}: {value.shape} vs OpenCV {theirs[out].shape}"
        errors[out] = float(np.abs(a - b).max() / np.abs(b).max())
        print(f"darknet-vs-opencv {name} {out} max_rel_err={errors[out]:.3g}")
    return errors


@pytest.mark.parametrize("name", ["yolov4-tiny", "yolov3-tiny", "classifier", "mlp"])
def test_matches_opencv(tmp_path, name):
    pytest.importorskip("cv2")
    cfg, weights = write_model(tmp_path, name, seed=7)
    errors = _compare(name, cfg, weights)
    expected = {"yolov4-tiny": ["yolo_22", "yolo_29"], "yolov3-tiny": ["yolo_16", "yolo_23"]}.get(name, ["output"])
    assert list(errors) == expected
    assert max(errors.values()) <= MAX_REL_ERR, errors


@pytest.mark.parametrize("name", ["classifier", "mlp"])
def test_every_layer_matches_opencv(tmp_path, name):
    """A softmax hides errors, so compare the cfg cut after each of its layers too."""
    pytest.importorskip("cv2")
    text = CFGS[name]
    starts = [i for i, line in enumerate(text.splitlines()) if line.startswith("[")]
    lines = text.splitlines()
    for count in range(2, len(starts)):
        cut = "\n".join(lines[: starts[count]]) + "\n"
        cfg = tmp_path / f"{name}-{count - 1}.cfg"
        cfg.write_text(cut)
        write_weights(cfg, cfg.with_suffix(".weights"), seed=count)
        errors = _compare(f"{name}@layer{count - 2}", cfg, cfg.with_suffix(".weights"))
        assert errors["output"] <= MAX_REL_ERR, (count, errors)


def test_traces_with_open_batch(tmp_path):
    import tensorflow as tf

    from buildsys.tflow.darknet import load_source

    cfg, weights = write_model(tmp_path, "yolov4-tiny", seed=3)
    source = load_source(cfg, weights)
    assert source.inputs[0].name == "input" and source.inputs[0].shape == [None, 128, 160, 3]
    spec = tf.TensorSpec(source.inputs[0].shape, tf.float32)
    traced = tf.function(lambda x: source.call([x]), input_signature=[spec])
    batch = np.concatenate([_image(cfg, 1), _image(cfg, 2)])
    together = traced(batch)
    alone = source.call([batch[1:]])
    assert [t.shape.as_list() for t in together] == [[2, 8, 10, 21], [2, 16, 20, 21]]
    for a, b in zip(together, alone):
        np.testing.assert_allclose(a.numpy()[1:], b.numpy(), rtol=1e-5, atol=1e-5)


def test_connected_batch_norm_follows_the_weights(tmp_path):
    """Darknet stores a connected layer's batch norm after its weights (a conv's before)."""
    cfg = tmp_path / "fc.cfg"
    cfg.write_text("[net]\nheight=1\nwidth=1\nchannels=3\n[connected]\noutput=2\nbatch_normalize=1\nactivation=relu\n")
    floats = random_params(cfg, seed=5)
    (tmp_path / "fc.weights").write_bytes(header() + floats.tobytes())
    biases, weights, scales, mean, var = np.split(floats, [2, 8, 10, 12])
    x = np.array([[[[0.5, -1.0, 2.0]]]], np.float32)
    expected = np.maximum(scales * (weights.reshape(2, 3) @ x.ravel() - mean) / (np.sqrt(var) + 1e-6) + biases, 0)
    got = _run_ours(cfg, tmp_path / "fc.weights", x)["output"]
    np.testing.assert_allclose(got.ravel(), expected, rtol=1e-5, atol=1e-6)


def test_unsupported_sections_listed_in_one_message(tmp_path):
    text = CLASSIFIER.replace("[dropout]", "[reorg]\nstride=2\n[dropout]")
    text = text.replace("activation=mish", "activation=hardswish")
    text += "\n[region]\nclasses=2\n[convolutional]\nfilters=2\nsize=3\ndilation=2\n"
    cfg = tmp_path / "x.cfg"
    cfg.write_text(text)
    with pytest.raises(InputError) as caught:
        parse(cfg)
    message = caught.value.message
    lines = text.splitlines()
    for section, layer in (("[reorg]", 7), ("[region]", 12)):
        assert f"x.cfg:{lines.index(section) + 1} [{section[1:-1]}] (layer {layer})" in message
    assert "activation=hardswish" in message and "dilation=2" in message
    assert message.count(str(cfg)) == 1 + 4  # the heading, then one row per problem
    assert "[convolutional]" in caught.value.hint and "[yolo]" in caught.value.hint


@pytest.mark.parametrize(
    "text, line, words",
    [
        ("filters=3\n[net]\nheight=8\nwidth=8\n", 1, "before the first [section]"),
        ("[net]\nheight=8\nwidth=8\n\n[convolutional]\n  # comment\nfilters 3\n", 7, "expected key=value"),
        ("[net]\nheight=8\nwidth=8\n[convolutional]\nfilters=16\nsize=3x3\n", 6, "size='3x3'"),
        ("[net]\nheight=8\nwidth=8\n[route]\nlayers=-1,a\n", 5, "not a comma-separated list"),
        ("[net]\nheight=8\nwidth=8\n[convolutional]\nfilters=4\n[shortcut]\nfrom=-5\n", 6, "not an earlier layer"),
    ],
)
def test_syntax_errors_name_the_line(tmp_path, text, line, words):
    cfg = tmp_path / "bad.cfg"
    cfg.write_text(text)
    with pytest.raises(InputError) as caught:
        weights = tmp_path / "bad.weights"
        weights.write_bytes(header())
        check_files(cfg, weights)
    assert f"bad.cfg:{line}" in caught.value.message and words in caught.value.message


def test_cfg_comments_spaces_and_aliases():
    sections = parse_text("# head\n[net]\n width = 8 ; w\nheight=8\n\n[conv]\nfilters = 4\nlayers = -1 , 2\n", "t.cfg")
    assert [s.type for s in sections] == ["net", "convolutional"]
    assert sections[0].options == {"width": "8", "height": "8"}
    assert sections[1].get_ints("layers") == [-1, 2] and sections[1].index == 0 and sections[1].line == 6


def test_check_files_accepts_matching_pair(tmp_path):
    cfg, weights = write_model(tmp_path, "yolov3-tiny")
    check_files(cfg, weights)
    assert weights.stat().st_size == 20 + 4 * parameter_count(parse(cfg))


def test_check_files_reads_old_header(tmp_path):
    cfg, weights = write_model(tmp_path, "mlp")
    weights.write_bytes(header(0, 1, 0) + random_params(cfg, 0).tobytes())
    check_files(cfg, weights)


@pytest.mark.parametrize(
    "damage, words",
    [
        (lambda data: data[:-40], "is truncated: it holds"),
        (lambda data: data + b"\0" * 64, "is longer than"),
        (lambda data: data[:-2], "not a whole number of float32"),
        (lambda data: b"[net]\nwidth=416\nheight=416\n" + data, "is not a Darknet .weights file"),
        (lambda data: data[:10], "is not a Darknet .weights file"),
    ],
)
def test_check_files_refuses_bad_weights(tmp_path, damage, words):
    cfg, weights = write_model(tmp_path, "classifier")
    weights.write_bytes(damage(weights.read_bytes()))
    with pytest.raises(InputError) as caught:
        check_files(cfg, weights)
    assert str(weights) in caught.value.message and words in caught.value.message
    assert caught.value.hint


def test_load_source_refuses_truncated_weights(tmp_path):
    cfg, weights = write_model(tmp_path, "mlp")
    weights.write_bytes(weights.read_bytes()[:-4])
    with pytest.raises(InputError, match="truncated"):
        _run_ours(cfg, weights, np.zeros((1, 12, 10, 2), np.float32))


def test_layer_table(tmp_path):
    cfg, _ = write_model(tmp_path, "yolov3-tiny")
    rows = layer_table(cfg)
    assert [r["index"] for r in rows] == list(range(24))
    assert rows[11]["type"] == "maxpool" and rows[11]["output"] == "3x4x32"  # stride 1 keeps the size
    assert rows[20]["notes"] == "from 19, 8" and rows[20]["output"] == "6x8x24"
    assert [r["output_name"] for r in rows if r["output_name"]] == ["yolo_16", "yolo_23"]
    assert sum(r["params"] for r in rows) == parameter_count(parse(cfg))
    assert model_outputs(cfg) == [
        {"name": "yolo_16", "layer": 16, "shape": [None, 3, 4, 21]},
        {"name": "yolo_23", "layer": 23, "shape": [None, 6, 8, 21]},
    ]


def test_route_groups_shape(tmp_path):
    cfg, _ = write_model(tmp_path, "yolov4-tiny")
    rows = layer_table(cfg)
    assert rows[3]["output"] == "32x40x8" and rows[3]["notes"] == "from 2, group 1 of 2"
    assert rows[26]["output"] == "16x20x48"
