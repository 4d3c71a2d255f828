"""Shared fixtures: a throwaway workspace holding a copy of the shapes example."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
EXAMPLE = ROOT / "examples" / "shapes"

# Modules and folders (paths under tests/) and single tests (path::name) that import TensorFlow or
# torch, build models or start services. They get the `slow` marker, so `pytest -m "not slow"`
# runs the rest in under a minute; a module not listed here counts as fast.
SLOW = {
    "test_architectures.py",
    "test_attention_layout.py",
    "test_build.py",
    "test_calib_ranges.py",
    "test_cli.py::test_build_summary_appends_a_markdown_table",
    "test_cli.py::test_index_keeps_other_recipes_and_follows_clean",
    "test_compat.py",
    "test_compilers.py",
    "test_conformance.py",
    "test_converter.py",
    "test_cpu_forms.py",
    "test_darknet.py",
    "test_darknet_build.py",
    "test_dask.py",
    "test_detector_layout.py",
    "test_device_builds.py",
    "test_device_check.py",
    "test_errors.py",
    "test_exporter_quirks.py",
    "test_fusions.py",
    "test_inspect.py",
    "test_int8_runs.py",
    "test_layers.py",
    "test_onnx_build.py",
    "test_patch_layout.py",
    "test_prepare.py",
    "test_pytorch_source.py",
    "test_qat_torch.py",
    "test_qdq_models.py",
    "test_quant_modes.py",
    "test_ranges.py",
    "test_recurrent_archs.py",
    "test_remote.py",
    "test_registry.py::test_the_builtin_handlers_claim_each_op_version_once",
    "test_replacements.py",
    "test_report_html.py",
    "test_sources.py",
    "test_state_inputs.py",
    "test_tf1.py",
    "test_tf1_build.py",
    "test_tflow.py",
    "test_torch_export.py",
    "test_validation.py",
    "ops/",
    "faults/test_hangs.py",
    "faults/test_integrity.py",
    "faults/test_ownership.py::test_clean_removes_only_what_the_build_wrote",
    "faults/test_small_defects.py",
    "faults/test_state.py",
    "faults/test_toolchain.py",
    "faults/test_user_errors.py::test_locked_build_says_the_lockfile_is_damaged",
    "faults/test_user_errors.py::test_npy_of_the_wrong_rank_names_the_file_and_the_onnx_layout",
}

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# a developer's shared-cache settings must not reach the tests' builds; the remote tests set their own
for _name in ("BUILDSYS_REMOTE", "BUILDSYS_REMOTE_MODE", "BUILDSYS_CACHE_KEY"):
    os.environ.pop(_name, None)

RECIPE = """\
# test recipe: int8 + fp32 from the shapes example
version: 1
name: shapes
source:
  keras: model/model.keras
batch: 1
calibration:
  samples: 8   # of 16 files, so the seed matters
  seed: 0
  inputs:
    image:
      images: data/calib/*.png
      scale: 0.00392156862745098
validate:
  samples: 8
  thresholds: {min_cosine: 0.95}
  inputs:
    image:
      images: data/val/*.png
      scale: 0.00392156862745098
targets:
  - device: cpu-int8
  - device: cpu-fp32
    name: fp32
"""


SOURCE_RECIPE = """\
version: 1
name: {name}
source:
{source}
{extra}calibration:
  samples: 16
  inputs: {{{input}: {{npy: calib.npy}}}}
validate:
  samples: 4
  thresholds: {{min_cosine: 0.99}}
targets:
  - device: cpu-int8
  - device: cpu-fp32
    name: fp32
"""


def source_recipe(name: str, source: str, input_name: str, extra: str = "") -> str:
    """A recipe building cpu-int8 and cpu-fp32 (target `fp32`) from `source` (the lines under
    `source:`, indented), calibrated on calib.npy and validated on 4 samples at cosine 0.99."""
    return SOURCE_RECIPE.format(name=name, source=source, extra=extra, input=input_name)


def make_workspace(root: Path) -> Path:
    (root / "recipes" / "model").mkdir(parents=True)
    shutil.copy(EXAMPLE / "model.keras", root / "recipes" / "model" / "model.keras")
    for part, count in (("calib", 16), ("val", 8)):
        dest = root / "recipes" / "data" / part
        dest.mkdir(parents=True)
        for png in sorted((EXAMPLE / part).glob("*.png"))[:count]:
            shutil.copy(png, dest / png.name)
    (root / "recipes" / "shapes.yaml").write_text(RECIPE)
    return root


def pytest_configure(config: pytest.Config) -> None:
    # a renamed module would otherwise drop out of SLOW silently and slow the fast suite down
    missing = sorted(name for name in SLOW if not (TESTS / name.split("::")[0]).exists())
    if missing:
        raise pytest.UsageError(f"tests/conftest.py SLOW names what does not exist: {', '.join(missing)}")


def is_slow(item: pytest.Item) -> bool:
    if not item.path.resolve().is_relative_to(TESTS):  # a file named on the command line
        return False
    module = item.path.resolve().relative_to(TESTS).as_posix()
    test = f"{module}::{getattr(item, 'originalname', item.name)}"
    return module in SLOW or test in SLOW or any(module.startswith(d) for d in SLOW if d.endswith("/"))


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if is_slow(item):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return make_workspace(tmp_path / "ws")


def run_cli(ws: Path, *args: str, check: int | None = 0) -> subprocess.CompletedProcess:
    """The real command in a fresh interpreter, as a user runs it."""
    proc = subprocess.run(
        [sys.executable, "-m", "buildsys", *args], cwd=ws, capture_output=True, text=True, timeout=900
    )
    if check is not None:
        assert proc.returncode == check, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


def noop_build_imports(ws: Path, packages: set[str]) -> subprocess.CompletedProcess:
    """Prints '<exit code> [which of `packages` a `buildsys build` in a fresh interpreter imported]'."""
    probe = (
        "import sys\n"
        "from buildsys.cli import main\n"
        "rc = main(['-q', 'build'])\n"
        f"heavy = sorted({{m.split('.')[0] for m in sys.modules}} & set({sorted(packages)!r}))\n"
        "print(rc, heavy)\n"
    )
    return subprocess.run([sys.executable, "-c", probe], cwd=ws, capture_output=True, text=True)


def build_json(ws: Path, *args: str, check: int | None = 0) -> dict[str, str]:
    """`build --json` as {stage path: outcome}."""
    proc = run_cli(ws, "build", "--json", *args, check=check)
    rows = json.loads(proc.stdout)
    return {"/".join(p for p in (r["target"], r["stage"]) if p): r["outcome"] for r in rows}
