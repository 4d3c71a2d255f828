"""TensorFlow 1 sources: a frozen GraphDef and a Saver checkpoint load as a Source equal to the session."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from buildsys.errors import InputError
from buildsys.tflow.frozen import as_function, freeze
from buildsys.tflow.shapes import TensorInfo
from buildsys.tflow.tf1 import (
    check_checkpoint,
    check_graph_file,
    checkpoint_files,
    checkpoint_summary,
    freeze_checkpoint,
    graph_summary,
    load_checkpoint_source,
    load_graph_source,
)

v1 = tf.compat.v1
TOL = 1e-5


def _cnn(image, labels):
    """conv+bias+relu, depthwise conv, fused batchnorm (inference), maxpool, dense, softmax; plus training."""
    init = v1.random_normal_initializer(stddev=0.3, seed=1)
    kernel = v1.get_variable("conv/kernel", [3, 3, 3, 8], initializer=init)
    bias = v1.get_variable("conv/bias", [8], initializer=init)
    x = tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(image, kernel, [1, 1, 1, 1], "SAME"), bias), name="conv/relu")
    depthwise = v1.get_variable("dw/kernel", [3, 3, 8, 1], initializer=init)
    x = tf.nn.depthwise_conv2d(x, depthwise, [1, 1, 1, 1], "SAME", name="dw/conv")
    scale, offset, mean = (v1.get_variable(f"bn/{n}", [8], initializer=init) for n in ("scale", "offset", "mean"))
    variance = v1.get_variable("bn/variance", [8], initializer=v1.random_uniform_initializer(0.5, 2.0, seed=2))
    x, _, _ = v1.nn.fused_batch_norm(x, scale, offset, mean, variance, is_training=False, name="bn/norm")
    x = tf.nn.max_pool2d(x, 2, 2, "VALID", name="pool")
    dense_init = v1.random_normal_initializer(stddev=0.05, seed=3)
    weights = v1.get_variable("dense/kernel", [16 * 16 * 8, 10], initializer=dense_init)
    logits = tf.matmul(tf.reshape(x, [-1, 16 * 16 * 8]), weights, name="dense/logits")
    prob = tf.nn.softmax(logits, name="prob")
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits), name="loss")
    train = v1.train.GradientDescentOptimizer(0.1).minimize(loss, name="train")
    return prob, train


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A checkpoint (prefix), a frozen .pb, a batch, and the session's outputs for it."""
    out = tmp_path_factory.mktemp("tf1")
    batch = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype(np.float32)
    graph = tf.Graph()
    with graph.as_default():
        image = v1.placeholder(tf.float32, [None, 32, 32, 3], name="image")
        labels = v1.placeholder(tf.int64, [None], name="labels")
        prob, _ = _cnn(image, labels)
        with v1.Session(graph=graph) as session:
            session.run(v1.global_variables_initializer())
            expected, pooled = session.run([prob, "pool:0"], {image: batch})
            from_pool = session.run(prob, {"pool:0": pooled + 0.5})
            v1.train.Saver().save(session, str(out / "model.ckpt"))
            frozen = v1.graph_util.convert_variables_to_constants(session, graph.as_graph_def(), ["prob"])
            (out / "unfrozen.pb").write_bytes(graph.as_graph_def().SerializeToString())
    (out / "frozen.pb").write_bytes(frozen.SerializeToString())
    return {
        "dir": out,
        "pb": out / "frozen.pb",
        "prefix": out / "model.ckpt",
        "batch": batch,
        "expected": expected,
        "pooled": pooled + 0.5,
        "from_pool": from_pool,
    }


@pytest.mark.parametrize("kind", ["graph", "checkpoint"])
def test_source_matches_session(model: dict, kind: str) -> None:
    if kind == "graph":
        source = load_graph_source(model["pb"], ["image"], ["prob:0"])
    else:
        source = load_checkpoint_source(model["prefix"], ["image:0"], ["prob"])
    assert source.inputs == [TensorInfo("image", [None, 32, 32, 3], "float32")]
    assert source.outputs == ["prob"]
    (got,) = source.call([tf.constant(model["batch"])])
    error = float(np.max(np.abs(got.numpy() - model["expected"])))
    print(f"{kind}: max abs error vs session {error:.3g}")
    assert got.shape == (2, 10)
    assert error <= TOL
    # another batch size: the graph is imported again at that shape
    (five,) = source.call([tf.constant(np.concatenate([model["batch"]] * 3)[:5])])
    assert float(np.max(np.abs(five.numpy()[:2] - model["expected"]))) <= TOL


def test_source_traces_in_tf_function(model: dict) -> None:
    """The pipeline's own freeze: static output shapes, one placeholder, same numbers."""
    source = load_graph_source(model["pb"], ["image"], ["prob"])
    graph_def, outputs = freeze(source.call, [tf.TensorSpec([2, 32, 32, 3], tf.float32, name="input_0")])
    assert outputs[0].shape.as_list() == [2, 10]
    assert [n.name for n in graph_def.node if n.op == "Placeholder"] == ["input_0"]
    (got,) = as_function(graph_def, 1, 1)(tf.constant(model["batch"]))
    assert float(np.max(np.abs(got.numpy() - model["expected"]))) <= TOL


def test_cut_at_an_inner_tensor(model: dict) -> None:
    """Any tensor can be fed, as with a feed_dict; the graph above it is dropped."""
    source = load_checkpoint_source(model["prefix"], ["pool"], ["prob"])
    assert source.inputs == [TensorInfo("pool", [None, 16, 16, 8], "float32")]
    (got,) = source.call([tf.constant(model["pooled"])])
    assert float(np.max(np.abs(got.numpy() - model["from_pool"]))) <= TOL
    assert not [n for n in source.owner.node if n.op == "Placeholder"]


def test_output_index_names(model: dict) -> None:
    source = load_graph_source(model["pb"], ["image"], ["prob", "bn/norm:0"])
    assert source.outputs == ["prob", "bn/norm"]
    with pytest.raises(InputError, match=r"bn/norm:7.*has 6 output"):
        load_graph_source(model["pb"], ["image"], ["bn/norm:7"])


def test_freeze_checkpoint_strips_training(model: dict) -> None:
    graph_def = freeze_checkpoint(model["prefix"], ["prob"])
    assert not {n.op for n in graph_def.node} & {"VariableV2", "SaveV2", "RestoreV2", "ApplyGradientDescent"}
    assert not [n.name for n in graph_def.node if n.name.startswith(("save/", "gradients/", "train"))]
    assert "labels" not in {n.name for n in graph_def.node}


@pytest.mark.parametrize(
    ("inputs", "outputs", "message"),
    [
        (["imag"], ["prob"], r"input 'imag' is not a node of .*frozen\.pb"),
        (["image"], ["probs"], r"output 'probs' is not a node of .*frozen\.pb"),
        (["image", "image:0"], ["prob"], r"inputs of .* name image twice"),
        (["image"], [], r"no outputs"),
        (["image", "dense/logits"], ["pool"], r"dense/logits:0.*feeds none of the outputs"),
    ],
)
def test_bad_names(model: dict, inputs: list[str], outputs: list[str], message: str) -> None:
    with pytest.raises(InputError, match=message) as info:
        load_graph_source(model["pb"], inputs, outputs)
    assert info.value.path == str(model["pb"])


def test_close_matches_hint(model: dict) -> None:
    with pytest.raises(InputError) as info:
        load_graph_source(model["pb"], ["imag"], ["prob"])
    assert "image" in info.value.hint


def test_checkpoint_names_are_checked_against_the_whole_graph(model: dict) -> None:
    with pytest.raises(InputError, match=r"output 'prb' is not a node of .*model\.ckpt") as info:
        load_checkpoint_source(model["prefix"], ["image"], ["prb"])
    assert "prob" in info.value.hint
    with pytest.raises(InputError, match=r"depend on placeholder 'labels'") as info:
        load_checkpoint_source(model["prefix"], ["image"], ["loss"])
    assert "inputs:" in info.value.hint


def test_unfrozen_graph_points_to_checkpoint(model: dict) -> None:
    with pytest.raises(InputError, match=r"not frozen: it reads variable") as info:
        load_graph_source(model["dir"] / "unfrozen.pb", ["image"], ["prob"])
    assert "checkpoint:" in info.value.hint


def test_truncated_graph(model: dict, tmp_path: Path) -> None:
    data = model["pb"].read_bytes()
    broken = tmp_path / "broken.pb"
    broken.write_bytes(data[: len(data) // 2])
    for action in (lambda: check_graph_file(broken), lambda: load_graph_source(broken, ["image"], ["prob"])):
        with pytest.raises(InputError, match=r"broken\.pb is not a GraphDef") as info:
            action()
        assert info.value.path == str(broken)
    empty = tmp_path / "empty.pb"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="no nodes"):
        check_graph_file(empty)
    check_graph_file(model["pb"])


def test_graph_missing_a_node(model: dict, tmp_path: Path) -> None:
    """A file cut at a node boundary parses: the dangling reference gives it away."""
    graph_def = v1.GraphDef.FromString(model["pb"].read_bytes())
    kept = [n for n in graph_def.node if n.name != "pool"]
    del graph_def.node[:]
    graph_def.node.extend(kept)
    (tmp_path / "cut.pb").write_bytes(graph_def.SerializeToString())
    with pytest.raises(InputError, match=r"cut\.pb is incomplete: node .* reads 'pool'"):
        check_graph_file(tmp_path / "cut.pb")
    with pytest.raises(InputError, match=r"cut\.pb is incomplete: it has no node 'pool'"):
        load_graph_source(tmp_path / "cut.pb", ["image"], ["prob"])


def test_meta_given_as_graph(model: dict) -> None:
    with pytest.raises(InputError) as info:
        check_graph_file(model["prefix"].with_name("model.ckpt.meta"))
    assert "checkpoint:" in info.value.hint


def test_saved_model_given_as_graph(tmp_path: Path) -> None:
    module = tf.Module()
    module.f = tf.function(lambda x: x * 2.0, input_signature=[tf.TensorSpec([None], tf.float32)])
    tf.saved_model.save(module, str(tmp_path / "sm"))
    with pytest.raises(InputError) as info:
        check_graph_file(tmp_path / "sm" / "saved_model.pb")
    assert "saved_model" in info.value.hint


def _copy_checkpoint(model: dict, to: Path) -> Path:
    for path in checkpoint_files(model["prefix"]):
        shutil.copy(path, to / path.name)
    return to / "model.ckpt"


def test_checkpoint_files(model: dict, tmp_path: Path) -> None:
    prefix = model["prefix"]
    names = [p.name for p in checkpoint_files(prefix)]
    assert names == ["model.ckpt.meta", "model.ckpt.index", "model.ckpt.data-00000-of-00001"]
    check_checkpoint(prefix)
    with pytest.raises(InputError, match="by its prefix") as info:
        checkpoint_files(prefix.with_name("model.ckpt.index"))
    assert info.value.hint.endswith("model.ckpt`")


def test_checkpoint_without_meta(model: dict, tmp_path: Path) -> None:
    prefix = _copy_checkpoint(model, tmp_path)
    (tmp_path / "model.ckpt.meta").unlink()
    with pytest.raises(InputError, match=r"model\.ckpt\.meta is missing") as info:
        check_checkpoint(prefix)
    assert "tf.compat.v1.train.Saver" in info.value.hint


def test_missing_data_shard(model: dict, tmp_path: Path) -> None:
    prefix = _copy_checkpoint(model, tmp_path)
    (tmp_path / "model.ckpt.data-00000-of-00001").unlink()
    with pytest.raises(InputError, match="no data file"):
        checkpoint_files(prefix)
    for shard in (0, 2):
        (tmp_path / f"model.ckpt.data-{shard:05d}-of-00003").write_bytes(b"x")
    with pytest.raises(InputError, match=r"data shard 2 of 3 \(model\.ckpt\.data-00001-of-00003\) is missing") as info:
        load_checkpoint_source(prefix, ["image"], ["prob"])
    assert info.value.path == str(tmp_path / "model.ckpt.data-00001-of-00003")


@pytest.mark.parametrize("how", ["truncated", "zeroed"])
def test_damaged_data_shard(model: dict, tmp_path: Path, how: str) -> None:
    prefix = _copy_checkpoint(model, tmp_path)
    shard = tmp_path / "model.ckpt.data-00000-of-00001"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2] if how == "truncated" else bytes(len(data)))
    for action in (lambda: check_checkpoint(prefix), lambda: load_checkpoint_source(prefix, ["image"], ["prob"])):
        with pytest.raises(InputError, match=r"model\.ckpt\.data-00000-of-00001 is damaged") as info:
            action()
        assert info.value.path == str(shard)


def test_corrupt_index(model: dict, tmp_path: Path) -> None:
    prefix = _copy_checkpoint(model, tmp_path)
    index = tmp_path / "model.ckpt.index"
    index.write_bytes(index.read_bytes()[:40])
    for action in (lambda: check_checkpoint(prefix), lambda: load_checkpoint_source(prefix, ["image"], ["prob"])):
        with pytest.raises(InputError, match=r"model\.ckpt\.index is damaged") as info:
            action()
        assert info.value.path == str(index)


def test_checkpoint_of_another_graph(model: dict, tmp_path: Path) -> None:
    """The files are sound but the .meta and the data come from different saves."""
    graph = tf.Graph()
    with graph.as_default(), v1.Session(graph=graph) as session:
        v1.get_variable("other", [3])
        session.run(v1.global_variables_initializer())
        v1.train.Saver().save(session, str(tmp_path / "model.ckpt"), write_meta_graph=False)
    shutil.copy(model["prefix"].with_name("model.ckpt.meta"), tmp_path / "model.ckpt.meta")
    with pytest.raises(InputError, match=r"cannot restore checkpoint .*model\.ckpt: .*not found") as info:
        load_checkpoint_source(tmp_path / "model.ckpt", ["image"], ["prob"])
    assert "same save" in info.value.hint


def test_tf1_control_flow(tmp_path: Path) -> None:
    """TF1 cond and while_loop (Switch/Merge/Enter frames) survive the import into a traced function."""
    was_v2 = v1.control_flow_v2_enabled()
    v1.disable_control_flow_v2()
    try:
        graph = tf.Graph()
        with graph.as_default():
            x = v1.placeholder(tf.float32, [None, 4], name="x")
            training = v1.placeholder_with_default(False, [], name="training")
            y = tf.cond(training, lambda: x * 2.0, lambda: x + 1.0)
            _, z = tf.while_loop(lambda i, a: i < 3, lambda i, a: (i + 1, a * 1.5), [tf.constant(0), y])
            tf.identity(z, name="out")
    finally:
        if was_v2:
            v1.enable_control_flow_v2()
    assert "Enter" in {n.op for n in graph.as_graph_def().node}
    (tmp_path / "loop.pb").write_bytes(graph.as_graph_def().SerializeToString())
    source = load_graph_source(tmp_path / "loop.pb", ["x"], ["out"])
    (got,) = source.call([tf.ones([2, 4])])
    np.testing.assert_allclose(got.numpy(), np.full([2, 4], 2.0 * 1.5**3))
    graph_def, _ = freeze(source.call, [tf.TensorSpec([2, 4], tf.float32, name="input_0")])
    (got,) = as_function(graph_def, 1, 1)(tf.ones([2, 4]))
    np.testing.assert_allclose(got.numpy(), np.full([2, 4], 2.0 * 1.5**3))


def test_corrupt_meta(model: dict, tmp_path: Path) -> None:
    prefix = _copy_checkpoint(model, tmp_path)
    meta = tmp_path / "model.ckpt.meta"
    meta.write_bytes(meta.read_bytes()[:100])
    with pytest.raises(InputError, match=r"model\.ckpt\.meta is not a MetaGraphDef"):
        check_checkpoint(prefix)


def test_graph_summary(model: dict) -> None:
    summary = graph_summary(model["pb"])
    assert summary["placeholders"] == [{"name": "image", "dtype": "float32", "shape": [None, 32, 32, 3]}]
    assert summary["likely_outputs"] == [{"name": "prob", "dtype": "float32", "shape": [None, 10]}]
    assert summary["nodes"] == sum(summary["ops"].values())
    assert summary["ops"]["Softmax"] == 1 and summary["ops"]["DepthwiseConv2dNative"] == 1


def test_checkpoint_summary(model: dict) -> None:
    summary = checkpoint_summary(model["prefix"])
    assert [p["name"] for p in summary["placeholders"]] == ["image", "labels"]
    assert "prob" in [o["name"] for o in summary["likely_outputs"]]
    assert not [o for o in summary["likely_outputs"] if o["name"].startswith(("save", "init", "train"))]
    assert summary["variables"] == 8
