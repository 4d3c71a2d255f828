"""External compiler runners: real Vela on tiny int8 models, edgetpu_compiler through a stand-in on PATH."""

from __future__ import annotations

import importlib.metadata
import json
import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest

from buildsys.compilers import COMPILERS, CompileResult, CompilerMissing
from buildsys.compilers.edgetpu import parse_log
from buildsys.errors import StageError, UsageError
from buildsys.tflow.inspect import op_histogram

ROOT = Path(__file__).resolve().parents[1]
# the converter's note about int8 inputs without given statistics; the model is fine
pytestmark = pytest.mark.filterwarnings("ignore:Statistics for quantized inputs:UserWarning")

# The args the built-in Ethos-U profiles carry: each names a system config and
# memory mode of Vela's Arm/vela.ini that suits the accelerator, so Vela does
# not fall back to (and warn about) its own defaults.
VELA_ARGS = {
    "ethos-u55-128": ["--accelerator-config", "ethos-u55-128", "--config", "Arm/vela.ini",
                      "--system-config", "Ethos_U55_High_End_Embedded", "--memory-mode", "Shared_Sram"],
    "ethos-u65-256": ["--accelerator-config", "ethos-u65-256", "--config", "Arm/vela.ini",
                      "--system-config", "Ethos_U65_High_End", "--memory-mode", "Dedicated_Sram_384KB"],
    "ethos-u85-256": ["--accelerator-config", "ethos-u85-256", "--config", "Arm/vela.ini",
                      "--system-config", "Ethos_U85_SYS_DRAM_Mid", "--memory-mode", "Dedicated_Sram_384KB"],
}  # fmt: skip


def _int8_tflite(tf, extra=None) -> bytes:
    """conv+relu, avgpool, [extra], dense; full-integer int8 from a representative dataset."""
    inp = tf.keras.Input((16, 16, 3), batch_size=1)
    x = tf.keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    x = tf.keras.layers.AveragePooling2D(2)(x)
    if extra is not None:
        x = extra(x)
    x = tf.keras.layers.Dense(4)(tf.keras.layers.Flatten()(x))
    converter = tf.lite.TFLiteConverter.from_keras_model(tf.keras.Model(inp, x))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    rng = np.random.default_rng(0)
    converter.representative_dataset = lambda: ([rng.random((1, 16, 16, 3), dtype=np.float32)] for _ in range(8))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    return converter.convert()


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    pytest.importorskip("ethosu.vela")
    tf = pytest.importorskip("tensorflow")
    root = tmp_path_factory.mktemp("models")
    # DEPTH_TO_SPACE is in neither Vela 5.2 supported-ops table (U55/U65 nor U85): it stays on the CPU
    depth_to_space = tf.keras.layers.Lambda(lambda t: tf.nn.depth_to_space(t, 2))
    out = {"plain": root / "model.tflite", "d2s": root / "d2s.tflite"}
    out["plain"].write_bytes(_int8_tflite(tf))
    out["d2s"].write_bytes(_int8_tflite(tf, depth_to_space))
    return out


@pytest.fixture(scope="module")
def compiled(models, tmp_path_factory) -> dict[str, CompileResult]:
    root = tmp_path_factory.mktemp("vela")
    return {name: COMPILERS["vela"].compile(models["plain"], root / name, args) for name, args in VELA_ARGS.items()}


def test_registry_matches_the_schema_and_is_read_only():
    schema = json.loads((ROOT / "schemas" / "device.schema.json").read_text("utf-8"))
    assert set(COMPILERS) == set(schema["properties"]["compile"]["properties"]["tool"]["enum"])
    with pytest.raises(TypeError):
        COMPILERS["other"] = COMPILERS["vela"]  # type: ignore[index]


def test_vela_version_is_the_installed_distribution():
    pytest.importorskip("ethosu.vela")
    assert COMPILERS["vela"].version() == importlib.metadata.version("ethos-u-vela")
    assert "buildsys[vela]" in COMPILERS["vela"].install_hint()


def test_vela_missing_is_compiler_missing_with_the_pip_hint(tmp_path, monkeypatch):
    import buildsys.compilers.vela as vela_module

    monkeypatch.setattr(vela_module, "installed_versions", lambda: {})  # as on a machine without the extra
    assert COMPILERS["vela"].version() is None
    model = tmp_path / "model.tflite"
    model.write_bytes(b"x")
    with pytest.raises(CompilerMissing) as caught:
        COMPILERS["vela"].compile(model, tmp_path / "w", [])
    assert "pip install 'buildsys[vela]'" in caught.value.hint


@pytest.mark.parametrize("accel", sorted(VELA_ARGS))
def test_vela_compiles_everything_to_the_npu(compiled, accel):
    result = compiled[accel]
    assert result.artifact.is_file() and result.artifact.name == "model_vela.tflite"
    assert op_histogram(result.artifact) == {"ethos-u": 1}
    summary = result.summary
    assert summary["tool"] == "vela" and summary["version"] == COMPILERS["vela"].version()
    assert summary["accelerator"] == accel
    expected = VELA_ARGS[accel]
    assert summary["system_config"] == expected[expected.index("--system-config") + 1]
    assert summary["memory_mode"] == expected[expected.index("--memory-mode") + 1]
    assert summary["npu_ops"] == 4 and summary["cpu_ops"] == 0 and summary["cpu_op_list"] == []
    assert summary["cycles"] > 0 and summary["npu_cycles"] > 0 and summary["inference_time_ms"] > 0
    assert summary["sram_used_kib"] >= 0 and summary["macs"] > 0
    assert "Warning: No" not in result.log  # the profile args leave Vela nothing to default
    json.dumps(summary, allow_nan=False)


def test_vela_leaves_unsupported_ops_on_the_cpu(models, tmp_path):
    for accel in ("ethos-u55-128", "ethos-u85-256"):
        result = COMPILERS["vela"].compile(models["d2s"], tmp_path / accel, VELA_ARGS[accel])
        summary = result.summary
        assert summary["cpu_ops"] == 1 and summary["cpu_op_list"] == ["DEPTH_TO_SPACE"]
        assert summary["npu_ops"] == 4 and summary["npu_partitions"] == 2
        assert op_histogram(result.artifact) == {"ethos-u": 2, "DEPTH_TO_SPACE": 1}
        assert "DEPTH_TO_SPACE" in result.log  # --show-cpu-operations puts the reason in the log


def test_vela_output_is_deterministic(models, tmp_path, compiled):
    again = COMPILERS["vela"].compile(models["plain"], tmp_path / "again", VELA_ARGS["ethos-u55-128"])
    first = compiled["ethos-u55-128"]
    assert again.artifact.read_bytes() == first.artifact.read_bytes()
    assert again.summary == first.summary


def test_vela_rerun_in_the_same_workdir_replaces_old_outputs(models, tmp_path):
    work = tmp_path / "w"
    COMPILERS["vela"].compile(models["plain"], work, VELA_ARGS["ethos-u55-128"])
    bad = work.parent / "model.tflite"
    bad.write_bytes(b"not a model")
    with pytest.raises(StageError):
        COMPILERS["vela"].compile(bad, work, VELA_ARGS["ethos-u55-128"])
    assert not (work / "model_vela.tflite").exists()


def test_vela_garbage_input_is_a_stage_error_with_its_complaint(models, tmp_path):
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(bytes(range(256)) * 2)
    with pytest.raises(StageError) as caught:
        COMPILERS["vela"].compile(junk, tmp_path / "w", VELA_ARGS["ethos-u55-128"])
    err = caught.value
    assert not isinstance(err, CompilerMissing)
    assert err.message.startswith("vela failed on junk.tflite: ")
    assert "Traceback" not in err.message and "\n" not in err.message
    complaint = err.message.split(": ", 1)[1]
    full_log = (tmp_path / "w" / "vela.log").read_text("utf-8")
    assert "Traceback" in full_log and complaint in full_log  # Vela's own words, without its traceback
    assert "vela.log" in err.hint


def test_vela_bad_profile_args(models, tmp_path):
    with pytest.raises(StageError, match="System_Config.Nope"):
        COMPILERS["vela"].compile(models["plain"], tmp_path / "a", ["--system-config", "Nope"])
    with pytest.raises(UsageError, match="--output-dir"):
        COMPILERS["vela"].compile(models["plain"], tmp_path / "b", ["--output-dir=elsewhere"])


# --- edgetpu_compiler ------------------------------------------------------------------------------------

# The console output and operation log in the format edgetpu_compiler 16 prints them.
CONSOLE = """\
Edge TPU Compiler version 16.0.384591198
Started a compilation timeout timer of 180 seconds.

Model compiled successfully in 42 ms.

Input model: model.tflite
Input size: 9.51KiB
Output model: model_edgetpu.tflite
Output size: 1.92MiB
On-chip memory used for caching model parameters: 604.50KiB
On-chip memory remaining for caching model parameters: 7.14MiB
Off-chip memory used for streaming uncached model parameters: 0.00B
Number of Edge TPU subgraphs: 1
Total number of operations: 5
Operation log: model_edgetpu.log

Model successfully compiled but not all operations are supported by the Edge TPU. A percentage of the model will \
instead run on the CPU, which is slower. If possible, consider updating your model to use only operations supported \
by the Edge TPU. For details, visit g.co/coral/model-reqs.
Number of operations that will run on Edge TPU: 2
Number of operations that will run on CPU: 3

Operator                       Count      Status

DEPTH_TO_SPACE                 1          Operation not supported
FULLY_CONNECTED                1          More than one subgraph is not supported
RESHAPE                        1          More than one subgraph is not supported
... All other operators were mapped successfully. See model_edgetpu.log.
Compilation child process completed within timeout period.
Compilation succeeded!
"""

OPLOG = """\
Edge TPU Compiler version 16.0.384591198
Input: model.tflite
Output: model_edgetpu.tflite

Operator                       Count      Status

CONV_2D                        1          Mapped to Edge TPU
AVERAGE_POOL_2D                1          Mapped to Edge TPU
DEPTH_TO_SPACE                 1          Operation not supported
RESHAPE                        1          More than one subgraph is not supported
FULLY_CONNECTED                1          More than one subgraph is not supported
"""

# All mapped: the compiler prints no per-device counts, only the log file has the table.
CONSOLE_ALL_MAPPED = """\
Edge TPU Compiler version 16.0.384591198
Started a compilation timeout timer of 180 seconds.

Model compiled successfully in 40 ms.

Input model: model.tflite
Input size: 9.51KiB
Output model: model_edgetpu.tflite
Output size: 80.00KiB
On-chip memory used for caching model parameters: 1.92MiB
On-chip memory remaining for caching model parameters: 5.50MiB
Off-chip memory used for streaming uncached model parameters: 3.00KiB
Number of Edge TPU subgraphs: 1
Total number of operations: 4
Operation log: model_edgetpu.log
See the operation log file for individual operation details.
Compilation child process completed within timeout period.
Compilation succeeded!
"""


def test_edgetpu_parser_reads_counts_table_and_memory():
    summary = parse_log(CONSOLE, OPLOG)
    assert (summary["npu_ops"], summary["cpu_ops"], summary["total_ops"]) == (2, 3, 5)
    assert summary["npu_partitions"] == 1
    assert summary["cpu_op_list"] == ["DEPTH_TO_SPACE", "FULLY_CONNECTED", "RESHAPE"]
    assert {row["op"] for row in summary["op_table"]} == {
        "CONV_2D", "AVERAGE_POOL_2D", "DEPTH_TO_SPACE", "RESHAPE", "FULLY_CONNECTED"
    }  # fmt: skip
    assert summary["on_chip_memory_used_kib"] == 604.5
    assert summary["on_chip_memory_remaining_kib"] == pytest.approx(7.14 * 1024)
    assert summary["off_chip_memory_used_kib"] == 0.0


def test_edgetpu_parser_counts_from_the_table_when_all_ops_map():
    oplog = OPLOG.split("DEPTH_TO_SPACE")[0] + "RESHAPE                        1          Mapped to Edge TPU\n"
    summary = parse_log(CONSOLE_ALL_MAPPED, oplog)
    assert (summary["npu_ops"], summary["cpu_ops"], summary["cpu_op_list"]) == (3, 0, [])
    assert summary["on_chip_memory_used_kib"] == pytest.approx(1.92 * 1024)
    assert summary["off_chip_memory_used_kib"] == 3.0
    # without the log file, the console's table is used (here: none) and counts stay unknown
    assert parse_log(CONSOLE_ALL_MAPPED)["npu_ops"] is None


def test_edgetpu_missing_is_compiler_missing_with_the_apt_hint(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    compiler = COMPILERS["edgetpu_compiler"]
    assert compiler.version() is None
    model = tmp_path / "model.tflite"
    model.write_bytes(b"x")
    with pytest.raises(CompilerMissing) as caught:
        compiler.compile(model, tmp_path / "w", [])
    assert isinstance(caught.value, StageError)
    for words in ("coral-edgetpu-stable", "apt-get install edgetpu-compiler", "x86-64"):
        assert words in caught.value.hint
    assert caught.value.hint == compiler.install_hint()


FAKE_COMPILER = """\
#!{python}
# Stand-in for edgetpu_compiler: the real program's arguments, outputs and console text.
import json, shutil, sys
from pathlib import Path
CONSOLE, OPLOG = json.loads({texts!r})
if sys.argv[1:] == ["--version"]:
    print("Edge TPU Compiler version 16.0.384591198")
    sys.exit(0)
argv = sys.argv[1:]
out = Path(argv[argv.index("-o") + 1])
model = Path(argv[-1])
(out / "argv.json").write_text(json.dumps(argv))
if model.read_bytes()[4:8] != b"TFL3":
    print("Edge TPU Compiler version 16.0.384591198")
    print("Invalid model: " + model.name)
    print("Model not quantized")
    sys.exit(1)
if b"NO-OUTPUT" in model.read_bytes():  # claims success, writes nothing
    print(CONSOLE, end="")
    sys.exit(0)
shutil.copyfile(model, out / (model.stem + "_edgetpu.tflite"))
(out / (model.stem + "_edgetpu.log")).write_text(OPLOG)
print(CONSOLE, end="")
"""


@pytest.fixture
def fake_edgetpu(tmp_path, monkeypatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "edgetpu_compiler"
    script.write_text(FAKE_COMPILER.format(python=sys.executable, texts=json.dumps([CONSOLE, OPLOG])))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    return script


def test_edgetpu_compile_through_the_tool_on_path(fake_edgetpu, tmp_path):
    model = tmp_path / "model.tflite"
    model.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(32))
    compiler = COMPILERS["edgetpu_compiler"]
    assert compiler.version() == "16.0.384591198"
    result = compiler.compile(model, tmp_path / "work", ["-m", "13"])
    assert result.artifact == (tmp_path / "work" / "model_edgetpu.tflite").resolve()
    assert result.artifact.read_bytes() == model.read_bytes()
    argv = json.loads((tmp_path / "work" / "argv.json").read_text())
    assert argv[argv.index("-o") + 1] == str((tmp_path / "work").resolve())
    assert "-s" in argv and argv[-3:] == ["-m", "13", str(model.resolve())]
    summary = result.summary
    assert summary["tool"] == "edgetpu_compiler" and summary["version"] == "16.0.384591198"
    assert (summary["npu_ops"], summary["cpu_ops"]) == (2, 3)
    assert summary["cpu_op_list"] == ["DEPTH_TO_SPACE", "FULLY_CONNECTED", "RESHAPE"]
    assert len(summary["op_table"]) == 5  # from the log file, the console's table is cut short
    assert "Number of operations that will run on CPU: 3" in result.log
    assert json.loads(json.dumps(summary)) == summary


def test_edgetpu_failure_names_the_compilers_complaint(fake_edgetpu, tmp_path):
    model = tmp_path / "float.tflite"
    model.write_bytes(b"not a tflite model")
    with pytest.raises(StageError) as caught:
        COMPILERS["edgetpu_compiler"].compile(model, tmp_path / "work", [])
    assert not isinstance(caught.value, CompilerMissing)
    assert caught.value.message == (
        "edgetpu_compiler failed on float.tflite: Invalid model: float.tflite; Model not quantized"
    )
    assert "model-reqs" in caught.value.hint
    model.write_bytes(b"\x1c\x00\x00\x00TFL3 NO-OUTPUT")
    with pytest.raises(StageError, match="exited 0 but wrote no float_edgetpu.tflite"):
        COMPILERS["edgetpu_compiler"].compile(model, tmp_path / "work", [])
    with pytest.raises(UsageError, match="--out_dir"):
        COMPILERS["edgetpu_compiler"].compile(model, tmp_path / "work", ["--out_dir", "x"])
