"""Golden stage keys: these tests fail when a stage key changes, as DVC pins its hashes.

A key change means every lockfile that holds the stage goes stale and every cache
entry of it is orphaned. That is right only for a deliberate change: a stage's
VERSION bumped, its params() reading another recipe field, a device profile edited,
or the key format itself changed in buildsys/stages/keys.py. Then:

1. run `pytest tests/test_stage_keys.py`; each failure prints the new value,
2. copy the new values into GOLDEN below, in the same commit as the change,
3. rebuild the bundled recipes (`buildsys build`) and commit the rewritten
   recipes/*.lock with it, saying in the message why the keys moved.

A failure after an edit that was meant to change no behaviour (a refactor, a new
optional recipe field, a renamed variable) is the bug these tests exist for: fix the
code, not the pins.

The keys are computed with fixed tool versions (TOOLS) and a fixed compiler version,
so they do not move with the installed TensorFlow or Vela. Files of the recipe the
test writes enter by their real content; outputs of earlier stages, which only a
build makes, are written by the test with fixed bytes (their path), so every stage's
full key is pinned without running anything.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from buildsys import lockfile
from buildsys.hashing import FileHasher
from buildsys.plan import Plan, make_plan
from buildsys.recipe import RecipeLoader, discover
from buildsys.stages import KINDS
from buildsys.stages.keys import VOLATILE, cache_key, key_doc, stage_key, static_digest, volatile_files
from buildsys.tools import LOCKED_TOOLS, STAGE_TOOLS
from buildsys.workspace import Workspace, relpath

ROOT = Path(__file__).resolve().parents[1]
TOOLS = {name: "0-golden" for name in LOCKED_TOOLS + STAGE_TOOLS}
COMPILER_VERSION = "0-golden"

# one recipe whose plan has every stage kind: a PyTorch source (export), an ONNX graph
# (prepare), int8 (calibration, ranges) for a device with a compiler (compile)
RECIPE = """\
version: 1
name: golden
source:
  pytorch: net.pt2
shapes:
  x: [1, 3, 4, 4]
calibration:
  samples: 2
  inputs: {x: {npy: calib.npy}}
validate:
  thresholds: {min_cosine: 0.9}
targets:
  - device: ethos-u55-128
"""

# kind: (static digest, full key)
GOLDEN = {
    "fetch": (
        "e2e50bf67f04883b3209b6336ba7f217899ec6aa2439840077a089825f97dd71",
        "58aeee8d7034835820bc95f7033e0b9d6172970edeb98450a3a3787d6f5d6dd4",
    ),
    "export": (
        "8bce9c6f5575dd5c1b6da7dcdd4fb605924694b159d25bd62d1791534a4862b2",
        "be16514beb43041d63546e0cab0afc9488d28260500ca9dcbc4a1d9dd7f3c365",
    ),
    "prepare": (
        "b4399edda009c0aba58387c5af7f47f88be505590b787a9603f48903be2ae929",
        "2afa7dace75a04db8212f002ff72ca00c1235fa9e2521f36ef11fd9ed80643e6",
    ),
    "calibration": (
        "ba01979fb8d634922eb5dbe5f424b4f165f69f5db8112e5f94ea9c1d79b737f6",
        "7a7ffcedefb3519b1d0feffaa1167d8cc7cb8990b63c1ca767a23ad5bd1760de",
    ),
    "convert": (
        "7a178df91b8d4ffbef81c6da0f618d5c8cf109a623795cdc077ce39fee3d6f13",
        "a67685841232abaf7c8c93fdfd91eda63e8a06eb14caad4b9da291c722b1c1eb",
    ),
    "ranges": (
        "c7e4d175bc6eff8b4caa412a6fe0b649ed849ef5b5a68a94ce282a46f20a691c",
        "f96ff8b8b3ea53fb347e32800ac7df2a510fd00d41ddc114cfa79159d0050cbc",
    ),
    "quantize": (
        "d91fed46181ca47f101aa15dd4a376543bc7a029e4a0dcea0430aa871c08f8fa",
        "4625fcbc9c5eeae5f8aa087741bed4e6dafe3108d1eab6596fa6cb3ca2719165",
    ),
    "validate": (
        "09b0278471d6925c648e382de220ecc9097d836946c44692b2b83f7379e3ba81",
        "e1a5ee07c30052ce0e6f5fdde53955260593fac3cd75c7adc328d1fa8fb1e069",
    ),
    "check": (
        "89af29466ce8a173e3a89ed8e9da77a517c619a237e842edfe16a77a6d28afb9",
        "8c35a7d6127e028dd33c985c45fe65b0c6ab09749e199927e2472b8a264d4923",
    ),
    "compile": (
        "262d006cad4578c3d4b58c5a5f96eca5f94becaf9252819fda0040a9a093d0b5",
        "d2f4a1c6ad37b5b50f35afc3293bab0e7b014ed24153255a2a3ad896dd1a4137",
    ),
    "report": (
        "37a1f223d6530fe648a2fdb21c7f7ac0ac4149e5e65b492e44fd20418c88f6fa",
        "2a3bc9590beffbc84737f815d42ece8d04bfd0c1c429800507a4854bee9f8979",
    ),
}


def write_workspace(root: Path) -> Path:
    """The golden recipe and its source files, with fixed bytes."""
    recipes = root / "recipes"
    recipes.mkdir(parents=True)
    (recipes / "net.pt2").write_bytes(b"golden pt2: fetch and export key it by content only\n")
    (recipes / "calib.npy").write_bytes(npy_bytes())
    (recipes / "golden.yaml").write_text(RECIPE)
    return root


def npy_bytes() -> bytes:
    """A [2, 3, 4, 4] float32 .npy written by hand: np.save's header text is numpy's to change."""
    header = b"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4, 4), }"
    header = header.ljust(128 - 10 - 1) + b"\n"  # magic, version and length take 10 bytes
    data = np.arange(2 * 3 * 4 * 4, dtype="<f4").tobytes()
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + data


def plan_of(root: Path) -> Plan:
    ws = Workspace.at(root)
    plan = make_plan(RecipeLoader().load_all(discover([ws.root / "recipes"], ws.root), ws.root), ws)
    for stage in plan.stages():
        if stage.kind == "compile":  # found at plan time; a remote worker takes the client's the same way
            stage.version = COMPILER_VERSION
    return plan


def write_upstream_outputs(plan: Plan) -> None:
    """Every stage output, as fixed bytes: its path in the workspace."""
    for stage in plan.stages():
        for path in stage.outputs().values():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(relpath(path, plan.env.ws.root))


def golden_keys(root: Path) -> dict[str, tuple[str, str]]:
    """{stage kind: (static digest, full key)} of the golden recipe in a new workspace at `root`."""
    plan = plan_of(write_workspace(root))
    write_upstream_outputs(plan)
    hasher = FileHasher()
    return {s.kind: (static_digest(s, TOOLS), cache_key(s, hasher, TOOLS)) for s in plan.stages()}


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, str]]:
    return golden_keys(tmp_path_factory.mktemp("golden") / "ws")


def test_the_golden_recipe_has_every_stage_kind(keys: dict[str, tuple[str, str]]) -> None:
    assert set(keys) == set(KINDS) == set(GOLDEN)


@pytest.mark.parametrize("kind", sorted(GOLDEN))
def test_stage_key_is_pinned(keys: dict[str, tuple[str, str]], kind: str) -> None:
    static, full = keys[kind]
    pinned_static, pinned_full = GOLDEN[kind]
    why = "the key changed: read this module's docstring before updating GOLDEN"
    assert (static, full) == (pinned_static, pinned_full), f'{why}\n    "{kind}": ("{static}", "{full}"),'


def test_keys_do_not_depend_on_where_the_workspace_is(keys: dict[str, tuple[str, str]], tmp_path: Path) -> None:
    # another depth and name: an absolute path in a key would make two checkouts share nothing
    assert golden_keys(tmp_path / "elsewhere" / "deeper" / "checkout") == keys


def test_an_input_byte_changes_the_full_key_but_not_the_static_part(tmp_path: Path) -> None:
    plan = plan_of(write_workspace(tmp_path / "ws"))
    fetch = plan.stages()[0]
    before = (static_digest(fetch, TOOLS), stage_key(key_doc(fetch, FileHasher(), TOOLS)))
    source = tmp_path / "ws" / "recipes" / "net.pt2"
    source.write_bytes(source.read_bytes() + b"!")
    after = (static_digest(fetch, TOOLS), stage_key(key_doc(fetch, FileHasher(), TOOLS)))
    assert after[0] == before[0] and after[1] != before[1]


def test_planning_and_keying_import_no_ml_framework(tmp_path: Path) -> None:
    probe = (
        "import sys\n"
        f"sys.path.insert(0, {str(ROOT / 'tests')!r})\n"
        "from pathlib import Path\n"
        "import test_stage_keys\n"
        f"test_stage_keys.golden_keys(Path({str(tmp_path / 'ws')!r}))\n"
        "heavy = {'tensorflow', 'keras', 'onnx', 'onnxruntime', 'torch', 'ai_edge_litert'}\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & heavy))\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]", proc.stdout + proc.stderr


class LockedDigests:
    """A lock's own record of each input's digest, by path relative to the recipe: what the
    build that wrote the lock hashed, without the build outputs on disk."""

    def __init__(self, base: Path, inputs: dict[str, str]):
        self.base, self.inputs = base, inputs

    def digest(self, path: Path) -> str:
        return self.inputs[relpath(path, self.base)]


@pytest.mark.parametrize("name", ["shapes-onnx", "shapes-classifier"])
def test_committed_locks_keys_are_what_keys_py_makes_of_them(name: str) -> None:
    """Each stage key in a bundled lock, remade from the lock's params, tools and input digests:
    a key format change that leaves the committed locks behind fails here."""
    recipe_path = ROOT / "recipes" / f"{name}.yaml"
    ws = Workspace.at(ROOT)
    plan = make_plan(RecipeLoader().load_all([recipe_path], ws.root), ws)
    lock = yaml.safe_load(lockfile.lock_path(plan.recipes[0].recipe).read_text("utf-8"))
    volatile = volatile_files(plan.stages())
    assert {s.local_id for s in plan.stages()} == set(lock["stages"])
    for stage in plan.stages():
        entry = lock["stages"][stage.local_id]
        hasher = LockedDigests(stage.recipe.base, entry["inputs"])
        doc = key_doc(stage, hasher, entry["tools"], volatile)
        assert (doc["version"], doc["params"], doc["tools"]) == (entry["version"], entry["params"], entry["tools"])
        assert stage_key(doc) == entry["key"], stage.local_id
    assert any(VOLATILE in e["inputs"].values() for e in lock["stages"].values())  # the rule is exercised
