"""Issue 12.4: a fresh clone installs the locked tools, and --locked names a tool that differs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, build_json, run_cli

from buildsys.tools import DISTRIBUTIONS


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if match := re.match(r"^([A-Za-z0-9_.-]+)==(\S+)$", line.strip()):
            pins[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(2)
    return pins


def test_constraints_pin_every_tool_the_committed_locks_record() -> None:
    pins = _pins()
    for lock in sorted((ROOT / "recipes").glob("*.lock")):
        tools = yaml.safe_load(lock.read_text())["tools"]
        for tool, version in tools.items():
            if tool in ("buildsys", "python"):
                continue
            dists = [re.sub(r"[-_.]+", "-", d).lower() for d in DISTRIBUTIONS.get(tool, (tool,))]
            pinned = [pins[d] for d in dists if d in pins]
            assert pinned == [version], f"{lock.name}: {tool} {version} is not what constraints.txt pins ({pinned})"


def test_ci_and_readme_install_with_the_constraints() -> None:
    assert "-c constraints.txt" in (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "pip install -c constraints.txt -e . && buildsys build" in readme


def test_locked_names_the_tool_that_differs_and_how_to_install_it(workspace: Path) -> None:
    build_json(workspace)
    lock = workspace / "recipes" / "shapes.lock"
    data = yaml.safe_load(lock.read_text())
    now = data["tools"]["onnxruntime"]
    lock.write_text(lock.read_text().replace(f"onnxruntime: {now}", "onnxruntime: 1.17.0"))
    proc = run_cli(workspace, "build", "--locked", check=1)
    assert f"tools.onnxruntime: 1.17.0 -> {now}" in proc.stderr
    assert "pip install 'onnxruntime==1.17.0'" in proc.stderr and "Traceback" not in proc.stderr


def test_locked_holds_on_a_machine_whose_float_kernels_differ(workspace: Path) -> None:
    """oneDNN picks kernels by CPU, and their rounding reaches the validation errors: a lock
    made on one machine must hold on another with the same tools. ONEDNN_MAX_CPU_ISA makes
    this machine pick the kernels an older CPU would."""
    import os
    import shutil
    import subprocess
    import sys

    build_json(workspace)
    metrics = workspace / "build" / "shapes" / "fp32" / "metrics.json"
    here, model = metrics.read_bytes(), (metrics.parent / "model.tflite").read_bytes()
    shutil.rmtree(workspace / "build")
    shutil.rmtree(workspace / ".buildsys")
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "SSE41"}
    cmd = [sys.executable, "-m", "buildsys", "build", "--locked"]
    proc = subprocess.run(cmd, cwd=workspace, env=env, capture_output=True, text=True, timeout=600)
    if metrics.is_file() and metrics.read_bytes() == here:
        pytest.skip("this CPU's kernels are the SSE4.1 ones already: nothing differs")
    assert proc.returncode == 0, proc.stderr
    assert (metrics.parent / "model.tflite").read_bytes() == model  # the artifact itself is the same
