"""The stage engine on the real doit runner (buildsys/stages/engine.py, buildsys/runner.py):
early cutoff and restore from the cache, with the plain-Python stages of core_stages.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from core_stages import build, words_plan, words_workspace

from buildsys.hashing import FileHasher
from buildsys.stages.engine import read_record
from buildsys.stages.keys import cache_key


def common(ws_root: Path, name: str) -> Path:
    return ws_root / "build" / "words" / "_common" / name


def test_first_build_runs_every_stage_and_the_second_none(tmp_path: Path) -> None:
    ws = words_workspace(tmp_path / "ws")
    assert build(ws) == {"upper": "ran", "count": "ran"}
    assert common(ws.root, "upper.txt").read_text() == "SOME QUIET WORDS\n"
    assert json.loads(common(ws.root, "count.json").read_text()) == {"words": 3}
    assert build(ws) == {"upper": "up-to-date", "count": "up-to-date"}


def test_early_cutoff_an_input_edit_that_yields_the_same_output_stops_there(tmp_path: Path) -> None:
    ws = words_workspace(tmp_path / "ws")
    build(ws)
    timing = common(ws.root, "timing.txt").read_text()
    (ws.root / "recipes" / "words.txt").write_text("SOME Quiet WORDS\n")  # upper-cases alike
    assert build(ws) == {"upper": "ran", "count": "up-to-date"}
    assert common(ws.root, "timing.txt").read_text() == timing  # count did not run at all


def test_an_output_that_changes_runs_the_stages_after_it(tmp_path: Path) -> None:
    ws = words_workspace(tmp_path / "ws")
    build(ws)
    (ws.root / "recipes" / "words.txt").write_text("two words\n")
    assert build(ws) == {"upper": "ran", "count": "ran"}
    assert json.loads(common(ws.root, "count.json").read_text()) == {"words": 2}


def test_deleted_outputs_are_restored_from_the_cache_without_running(tmp_path: Path) -> None:
    ws = words_workspace(tmp_path / "ws")
    build(ws)
    made = {name: common(ws.root, name).read_bytes() for name in ("upper.txt", "count.json", "timing.txt")}
    for name in made:
        common(ws.root, name).unlink()
    assert build(ws) == {"upper": "restored", "count": "restored"}
    # timing.txt differs on every run: the same bytes prove count's run() was not called
    assert {name: common(ws.root, name).read_bytes() for name in made} == made


def test_a_damaged_output_is_restored_not_trusted(tmp_path: Path) -> None:
    ws = words_workspace(tmp_path / "ws")
    build(ws)
    common(ws.root, "upper.txt").write_text("tampered\n")
    assert build(ws) == {"upper": "restored", "count": "up-to-date"}
    assert common(ws.root, "upper.txt").read_text() == "SOME QUIET WORDS\n"


def test_a_reverted_edit_restores_instead_of_running(tmp_path: Path) -> None:
    ws = words_workspace(tmp_path / "ws")
    build(ws)
    words = ws.root / "recipes" / "words.txt"
    original = words.read_text()
    words.write_text("something else entirely\n")
    assert build(ws) == {"upper": "ran", "count": "ran"}
    words.write_text(original)
    assert build(ws) == {"upper": "restored", "count": "restored"}
    assert common(ws.root, "upper.txt").read_text() == "SOME QUIET WORDS\n"


def test_the_record_holds_the_key_keys_py_makes(tmp_path: Path) -> None:
    ws = words_workspace(tmp_path / "ws")
    build(ws)
    plan = words_plan(ws)
    for stage in plan.stages():
        record = read_record(plan.env, stage)
        assert record["key"] == cache_key(stage, FileHasher(), plan.env.tools)
        assert (ws.cache_dir / "keys" / f"{record['key']}.json").is_file()


def test_the_engine_and_runner_import_no_ml_framework(tmp_path: Path) -> None:
    """These tests stay fast only while running a stage through doit loads no model library."""
    probe = (
        "import sys\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from pathlib import Path\n"
        "from core_stages import build, words_workspace\n"
        f"assert build(words_workspace(Path({str(tmp_path / 'ws')!r}))) == {{'upper': 'ran', 'count': 'ran'}}\n"
        "heavy = {'tensorflow', 'keras', 'onnx', 'onnxruntime', 'torch', 'ai_edge_litert'}\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & heavy))\n"
    )
    root = Path(__file__).resolve().parents[1]  # where `buildsys` imports from without an install
    proc = subprocess.run([sys.executable, "-c", probe], cwd=root, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]", proc.stdout + proc.stderr
