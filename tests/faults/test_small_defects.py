"""Issue 12, defects 10b and 11: handler bugs shown as internal errors, graph ids,
TensorFlow's log noise, IO requantize ops in the device check, the per-layer table's width.

Every test runs the real command (or the real check on a real artifact); the one
stand-in is a converter handler replaced, in the child process, by one with a bug.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import EXAMPLE, RECIPE, make_workspace, run_cli

ONNX_RECIPE = """\
version: 1
name: {name}
source:
  onnx: model.onnx
shapes: {{image: [1, 3, 64, 64]}}
calibration:
  samples: 8
  inputs:
    image: {{images: calib/*.png, scale: 0.00392156862745098}}
validate:
  samples: 4
targets:
  - device: cpu-int8
"""


def onnx_workspace(root: Path, name: str = "net") -> Path:
    recipes = root / "recipes"
    (recipes / "calib").mkdir(parents=True)
    shutil.copy(EXAMPLE / "model.onnx", recipes / "model.onnx")
    for png in sorted((EXAMPLE / "calib").glob("*.png"))[:12]:
        shutil.copy(png, recipes / "calib" / png.name)
    (recipes / f"{name}.yaml").write_text(ONNX_RECIPE.format(name=name))
    return root


def cli(ws: Path, *args: str, script: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m buildsys ARGS`, or `python SCRIPT ARGS` (a script that calls main)."""
    head = [str(script)] if script else ["-m", "buildsys"]
    return subprocess.run([sys.executable, *head, *args], cwd=ws, capture_output=True, text=True, timeout=900, env=env)


# -- 10b: a bug in an op handler is an internal error, not "conversion failed" ---------------

# The Relu handler replaced by one with a plain programming error (a TypeError).
BUGGY_RELU = textwrap.dedent(
    """
    import sys
    from buildsys.cli import main, quiet_tensorflow

    quiet_tensorflow()  # as main does, before this script imports TensorFlow itself
    import buildsys.converter.ops.activation as activation
    from buildsys.converter.registry import handles

    @handles("Relu", since=6)
    def relu(ctx, node):
        return sum(node.inputs, 0)  # TypeError: int + str

    activation.relu = relu
    sys.exit(main(sys.argv[1:]))
    """
)


def test_handler_bug_is_an_internal_error_naming_the_node_with_its_traceback(tmp_path: Path) -> None:
    ws = onnx_workspace(tmp_path / "ws", "buggy")
    script = tmp_path / "buggy_build.py"  # a file, so tracebacks quote its lines
    script.write_text(BUGGY_RELU)
    # -j 2: the error crosses from a worker process; -v: the traceback is printed
    loud = cli(ws, "build", "-v", "-j", "2", script=script)
    assert loud.returncode == 1, loud.stderr
    for said in ("internal error in stage buggy/convert", "'/features/relu1/Relu' (Relu)", "TypeError"):
        assert said in loud.stderr, loud.stderr
    assert "conversion failed" not in loud.stderr and "cannot be converted" not in loud.stderr
    assert "Traceback (most recent call last)" in loud.stderr and "sum(node.inputs, 0)" in loud.stderr

    log = ws / ".buildsys" / "logs" / "buggy__convert.log"
    text = log.read_text("utf-8")
    assert "Traceback (most recent call last)" in text and "sum(node.inputs, 0)" in text
    assert "'/features/relu1/Relu' (Relu)" in text

    calm = cli(ws, "build", script=script)  # without -v: one screen, pointing at the log
    assert calm.returncode == 1, calm.stderr
    assert "internal error in stage buggy/convert" in calm.stderr and "'/features/relu1/Relu'" in calm.stderr
    assert "Traceback" not in calm.stderr and "buggy__convert.log" in calm.stderr


# -- 11a: graph node ids are unique and valid, labels are the real names --------------------

NODE = {
    "mermaid": re.compile(r'^\s+(\S+)\["(.*)"\]$'),
    "dot": re.compile(r'^\s+(\S+) \[label="(.*)"\];$'),
}
EDGE = {"mermaid": re.compile(r"^\s+(\S+) --> (\S+)$"), "dot": re.compile(r"^\s+(\S+) -> (\S+);$")}
VALID_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def test_graph_ids_stay_unique_for_names_that_differ_in_punctuation(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    one_target = RECIPE[: RECIPE.index("targets:")] + "targets:\n  - device: cpu-int8\n"
    (ws / "recipes" / "shapes.yaml").unlink()
    for name in ("a-b", "a_b", "a.b"):
        (ws / "recipes" / f"{name}.yaml").write_text(one_target.replace("name: shapes", f"name: {name}"))
    truth = set()  # (upstream, downstream) task names, from the text format
    stages = []
    for line in run_cli(ws, "graph").stdout.splitlines():
        down, _, ups = line.partition("  <- ")
        stages.append(down)
        truth |= {(up, down) for up in ups.split(", ") if ups}
    assert len(stages) == 24 and len(truth) > 0

    for fmt in ("mermaid", "dot"):
        out = run_cli(ws, "graph", "--format", fmt).stdout.splitlines()
        labels = dict(m.groups() for line in out if (m := NODE[fmt].match(line)))
        assert sorted(labels.values()) == sorted(stages), fmt  # one node per stage, labelled by its name
        assert all(VALID_ID.match(node) for node in labels), fmt
        edges = {(labels[u], labels[d]) for line in out if (m := EDGE[fmt].match(line)) for u, d in [m.groups()]}
        assert edges == truth, fmt


# -- 11b: TensorFlow's start-up log lines stay off the terminal -----------------------------

NOISE = (
    "All log messages before absl::InitializeLog()",
    "oneDNN custom operations are on",
    "TF_ENABLE_ONEDNN_OPTS",
    "cpu_feature_guard",
    "This TensorFlow binary is optimized",
    "rebuild TensorFlow with the appropriate compiler flags",
)

NPU = """\
extends: axis-artpec8
description: an NPU whose allowlist has every op of the shapes model but not QUANTIZE
ops:
  CONV_2D: {}
  REDUCE_MAX: {}
  FULLY_CONNECTED: {}
  SOFTMAX: {}
on_unsupported: fail
"""


def user_env() -> dict[str, str]:
    """The environment of a user who never heard of TF_CPP_MIN_LOG_LEVEL (conftest sets it)."""
    quiet = ("TF_CPP_MIN_LOG_LEVEL", "ABSL_MIN_LOG_LEVEL", "GRPC_VERBOSITY", "TF_ENABLE_ONEDNN_OPTS")
    return {k: v for k, v in os.environ.items() if k not in quiet}


@pytest.fixture(scope="module")
def shapes_built(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """The shapes workspace plus a uint8-IO target on a profile whose `ops:` lacks QUANTIZE,
    built once with a process pool (-j 2)."""
    ws = make_workspace(tmp_path_factory.mktemp("shapes") / "ws")
    (ws / "recipes" / "devices").mkdir()
    (ws / "recipes" / "devices" / "npu.yaml").write_text(NPU)
    recipe = ws / "recipes" / "shapes.yaml"
    recipe.write_text(recipe.read_text() + "  - device: devices/npu.yaml\n    name: npu\n")
    return ws, cli(ws, "build", "-j", "2", env=user_env())


def test_builds_print_no_tensorflow_start_up_noise(shapes_built, tmp_path: Path) -> None:
    ws, pooled = shapes_built
    fresh = shutil.copytree(ws / "recipes", tmp_path / "ws" / "recipes")
    inline = cli(fresh.parent, "build", env=user_env())  # -j 1: the stages run in the CLI process
    for proc in (pooled, inline):
        said = proc.stdout + proc.stderr
        assert "shapes/convert" in said and "ran" in said, said  # TensorFlow did load
        leaked = [line for line in said.splitlines() if any(n in line for n in NOISE)]
        assert leaked == [], "\n".join(leaked)


# -- 11c: the QUANTIZE ops buildsys adds for uint8 IO are not the user's allowlist problem ---


def test_uint8_io_requantize_is_not_blamed_on_the_op_allowlist(shapes_built) -> None:
    ws, proc = shapes_built
    assert proc.returncode == 0, proc.stderr  # on_unsupported: fail, and nothing is unsupported
    assert "QUANTIZE" not in proc.stderr and "not supported" not in proc.stderr
    compat = json.loads((ws / "build" / "shapes" / "npu" / "compat.json").read_text())
    assert compat["summary"]["unsupported"] == 0 and compat["summary"]["first_unsupported"] is None
    quantize = [op for op in compat["ops"] if op["op"] == "QUANTIZE"]
    assert [op["index"] for op in quantize] == [0, len(compat["ops"]) - 1]  # at the edges
    for op, conversion in zip(quantize, ("uint8 -> int8", "int8 -> uint8")):
        assert op["supported"] and op["placement"] == "cpu", op  # the device cannot run it
        assert conversion in op["io_conversion"] and "IO conversion" in op["reasons"][0], op
    inner = [op for op in compat["ops"] if op["op"] != "QUANTIZE"]
    assert all(op["supported"] and op["placement"] == "accelerator" for op in inner)
    report = (ws / "build" / "shapes" / "npu" / "report.html").read_text()
    assert "IO conversions buildsys added" in report and 'id="unsupported"' not in report


# -- 11d: report.html's per-layer table fits its card at 1280 px -----------------------------

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
MEASURE = """<script>
addEventListener("load", () => {
  const card = document.getElementById("layer-error"), table = document.getElementById("layers");
  const out = {scroll: card.scrollWidth, client: card.clientWidth,
               table: table.getBoundingClientRect().right, card: card.getBoundingClientRect().right,
               names: Math.max(...[...table.querySelectorAll("code")].map(c => c.textContent.length))};
  const pre = document.createElement("pre");
  pre.id = "measured";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def browser() -> str | None:
    return next((found for name in BROWSERS if (found := shutil.which(name))), None)


def long_named_workspace(root: Path) -> Path:
    """The ONNX shapes model with node names as long as real exporters make them."""
    import onnx

    ws = onnx_workspace(root, "long")
    model = onnx.load(str(ws / "recipes" / "model.onnx"))
    for i, node in enumerate(model.graph.node):
        block = f"/model/backbone/stage_{i}/residual_block_{i}"
        node.name = f"{block}/{node.op_type}_with_batch_norm_folded_and_activation_fused_{i}"
    onnx.save(model, str(ws / "recipes" / "model.onnx"))
    return ws


@pytest.mark.skipif(browser() is None, reason="no chromium/chromium-browser/google-chrome installed")
def test_per_layer_table_with_long_names_fits_its_card_at_1280px(tmp_path: Path) -> None:
    ws = long_named_workspace(tmp_path / "ws")
    run_cli(ws, "build")
    report = ws / "build" / "long" / "cpu-int8" / "report.html"
    probe = report.with_name("probe.html")  # the report has no scripts; its copy measures itself
    probe.write_text(report.read_text("utf-8").replace("</body>", MEASURE + "</body>"), "utf-8")
    command = [
        browser(), "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,2000", "--dump-dom", probe.as_uri(),
    ]  # fmt: skip
    dom = subprocess.run(command, capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="measured">(.*?)</pre>', dom.stdout)
    assert found, dom.stderr[-2000:]
    measured = json.loads(found.group(1))
    assert measured["names"] > 150  # the case at hand: fused names far wider than a column
    assert measured["scroll"] <= measured["client"], measured
    assert measured["table"] <= measured["card"], measured
