"""Recipe fuzzer (issue 12): seeded mutations of the bundled recipes, run in-process.

Each case writes one mutated recipe (sometimes a device profile too) into a shared
workspace, runs `buildsys check` (a few `graph` and `status`) through
`buildsys.cli.main` twice, and demands what a user is promised for any input: exit
0 or 2 (exactly the one the mutation implies, where it implies one), a one-screen
message naming the file and never a traceback or a Python warning, an answer within
the time budget, the same answer the second time (from the memo of valid recipes),
and no file written outside build/ and .buildsys/ of the workspace.

Cases are generated from BUILDSYS_FUZZ_SEED (default 12; BUILDSYS_FUZZ_CASES,
BUILDSYS_FUZZ_BUDGET) and numbered; each case draws from its own
`Random(f"{seed}-{number}")`, so a case stays the same when others are added. A
failure prints the mutation, the command and the recipe text; rerun one case with
`BUILDSYS_FUZZ_SEED=26 pytest tests/faults/test_fuzz.py -k case0173`.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import traceback
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import EXAMPLE, RECIPE, ROOT, make_workspace
from fuzz_mutations import KINDS, KNOWN, OUTSIDE, RECIPE_PATHS, WS, dump

from buildsys.cli import main

SEED = int(os.environ.get("BUILDSYS_FUZZ_SEED", "12"))
CASES = int(os.environ.get("BUILDSYS_FUZZ_CASES", "360"))
BUDGET_S = float(os.environ.get("BUILDSYS_FUZZ_BUDGET", "10"))
# A message must fit a screen: every problem at once, but not a dump.
SCREEN_LINES, SCREEN_CHARS = 60, 12_000
CRASH_WORDS = ("Traceback", "internal error", "bug in buildsys")

BASES = {
    "shapes": ("recipes/shapes.yaml", RECIPE),
    **{f"{p.stem}": (f"recipes/{p.name}", p.read_text("utf-8")) for p in sorted((ROOT / "recipes").glob("*.yaml"))},
}

DEVICE_PROFILE = """\
extends: cpu-int8
description: "fuzz: a per-tensor NPU"
quantization: {per_channel: false, input_type: uint8}
ops:
  CONV_2D: {kernel: [1, 3], stride: [1, 2]}
  ADD: {}
"""


# -- the workspace ------------------------------------------------------------------


@pytest.fixture(scope="module")
def arena(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """One workspace for every case, a directory outside it, and a neutral cwd."""
    root = tmp_path_factory.mktemp("fuzz")
    ws = make_workspace(root / "ws")
    shutil.copytree(EXAMPLE, ws / "examples" / "shapes", ignore=shutil.ignore_patterns("__pycache__"))
    for recipe in sorted((ROOT / "recipes").iterdir()):
        if recipe.suffix in (".yaml", ".lock"):
            shutil.copy(recipe, ws / "recipes" / recipe.name)
    (ws / "recipes" / "devices").mkdir()
    (ws / "recipes" / "devices" / "my-npu.yaml").write_text(DEVICE_PROFILE)
    (ws / ".buildsys").mkdir()  # as after a build: `check` then keeps its memo of valid recipes
    outside = make_outside(root / "outside")
    cwd = root / "cwd"
    cwd.mkdir()
    # relative paths that escape -C must land where the snapshot sees them
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(cwd)
        yield {"root": root, "ws": ws, "outside": outside}


def make_outside(path: Path) -> Path:
    """Files a mutated recipe may point at: none of them may change, none may hang a check."""
    path.mkdir()
    (path / "file.txt").write_text("sentinel\n")
    shutil.copy(EXAMPLE / "model.keras", path / "model.keras")
    (path / "dir.yaml").mkdir()
    (path / "profile.yaml").write_text(DEVICE_PROFILE)
    for name in ("fifo", "fifo.yaml", "fifo.png", "fifo.npy", "fifo.keras"):
        os.mkfifo(path / name)
    for name in ("zero.yaml", "zero.png", "zero.npy", "zero.keras"):
        (path / name).symlink_to("/dev/zero")
    (path / "loop.yaml").symlink_to(path / "loop.yaml")
    with open(path / "huge.yaml", "wb") as f:  # sparse: big to read, no disk used
        f.truncate(64 << 20)
    with open(path / "huge.npy", "wb") as f:
        f.truncate(64 << 20)
    return path


# -- cases ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    number: int
    kind: str
    base: str
    what: str
    body: str | bytes
    argv: tuple[str, ...]
    expect: int | None
    files: tuple[tuple[str, str | bytes], ...] = ()  # more files the case writes into the workspace

    @property
    def id(self) -> str:
        return f"case{self.number:04d}-{self.kind}-{self.base}"

    def recipe(self) -> str:
        return BASES[self.base][0]

    def named(self) -> list[str]:
        """File names an error of this case may be about."""
        return [Path(name).name for name in [self.recipe()] + [f for f, _ in self.files]]

    def payload(self, ws: Path, outside: Path, body: str | bytes | None = None) -> bytes:
        body = self.body if body is None else body
        body = body if isinstance(body, bytes) else body.encode("utf-8", "surrogatepass")
        return body.replace(WS.encode(), str(ws).encode()).replace(OUTSIDE.encode(), str(outside).encode())

    def command(self, ws: Path, outside: Path) -> list[str]:
        return [a.replace(WS, str(ws)).replace(OUTSIDE, str(outside)) for a in self.argv]


def make_case(number: int) -> Case:
    rng = random.Random(f"{SEED}-{number}")
    base = rng.choice(sorted(BASES))
    path, text = BASES[base]
    # the first cases take every kind once, so each seed covers them all
    kind = list(KINDS)[number] if number < len(KINDS) else rng.choices(list(KINDS), [w for _, w in KINDS.values()])[0]
    argv = command_for(rng, path)
    if kind == "recipe_path":  # the command names something else than the recipe
        given = rng.choice(sorted(RECIPE_PATHS))
        what, body, expect = f"recipe path {given!r}", text, RECIPE_PATHS[given]
        return Case(number, kind, base, what, body, tuple(a for a in argv if a != path) + (given,), expect)
    if kind == "profile":
        return profile_case(rng, number, base, text, argv)
    if kind == "lockfile":
        return lockfile_case(rng, number, base, text, path)
    if kind == "workspace":
        given = rng.choice(sorted(WORKSPACES))
        argv = ("-C", given) + argv[2:]
        return Case(number, kind, base, f"workspace {given!r}", text, argv, WORKSPACES[given])
    what, body, expect = KINDS[kind][0](rng, text, yaml.safe_load(text))
    # only after edits of the data: text edits may leave an alias bomb that a walk of the data would expand
    if rng.random() < 0.2 and kind in DATA_KINDS and isinstance(data := _reparse(body), dict):
        # a second mutation on top of the first: states no single edit reaches (no expectation holds)
        second = rng.choice(DATA_KINDS)
        try:
            more, body, _ = KINDS[second][0](rng, body, data)
        except (KeyError, TypeError, IndexError, AttributeError, ValueError):
            return Case(number, kind, base, what, body, argv, expect)  # the first edit left no place for it
        kind, what, expect = f"{kind}+{second}", f"{what}; then {more}", None
    return Case(number, kind, base, what, body, argv, expect)


# -C given something else than the workspace (the recipe path stays relative to it)
WORKSPACES = {
    f"{OUTSIDE}/file.txt": 2,
    f"{OUTSIDE}/nope": 2,
    f"{OUTSIDE}/dir.yaml": 2,
    f"{OUTSIDE}/fifo": 2,
    f"{WS}/recipes": 2,
    f"{WS}/../ws": 0,
    f"{WS}/": 0,
}
# mutations that fit any YAML mapping, here a device profile's
GENERIC = [
    "delete_key",
    "duplicate_key",
    "retype",
    "number",
    "bigint",
    "nonfinite",
    "long_string",
    "unicode",
    "control_chars",
    "truncate",
    "tabs",
    "tags",
    "toplevel",
    "documents",
    "encoding",
    "unknown_key",
    "empty",
]
EXTENDS = [
    "cpu-int9",
    "fuzz.yaml",
    "my-npu.yaml",
    "../../../../etc/passwd.yaml",
    f"{OUTSIDE}/fifo.yaml",
    f"{OUTSIDE}/zero.yaml",
    f"{OUTSIDE}/huge.yaml",
    f"{OUTSIDE}/dir.yaml",
    f"{OUTSIDE}/loop.yaml",
    f"{OUTSIDE}/profile.yaml",
    "",
    "axis-cv25",
    "ethos-u55-128",
    None,
    1,
    ["cpu-int8"],
]


def profile_case(rng: random.Random, number: int, base: str, text: str, argv: tuple[str, ...]) -> Case:
    """The recipe's first target takes devices/fuzz.yaml, a mutated device profile."""
    data = yaml.safe_load(text)
    data["targets"][0] = {"device": "devices/fuzz.yaml"}
    profile = yaml.safe_load(DEVICE_PROFILE)
    if rng.random() < 0.3:
        profile["extends"] = rng.choice(EXTENDS)
        what, body = f"profile extends {profile['extends']!r}", dump(profile)
    else:
        kind = rng.choice(GENERIC)
        what, body, _ = KINDS[kind][0](rng, DEVICE_PROFILE, profile)
        what = f"profile {kind}: {what}"
    return Case(number, "profile", base, what, dump(data), argv, None, (("recipes/devices/fuzz.yaml", body),))


LOCK = (ROOT / "recipes" / "shapes-onnx.lock").read_text("utf-8")


def lockfile_case(rng: random.Random, number: int, base: str, text: str, recipe: str) -> Case:
    """`status` reads the lockfile next to the recipe: a damaged one is a message, not a traceback."""
    kind = rng.choice(GENERIC)
    what, body, _ = KINDS[kind][0](rng, LOCK, yaml.safe_load(LOCK))
    lock = str(Path(recipe).with_suffix(".lock"))
    argv = ("-C", WS, "status", *rng.choice([[], ["--json"]]), recipe)
    return Case(number, "lockfile", base, f"lockfile {kind}: {what}", text, argv, None, ((lock, body),))


# kinds that work on the data, so they can follow another mutation
DATA_KINDS = [
    "delete_key",
    "retype",
    "number",
    "long_string",
    "unicode",
    "control_chars",
    "path_traversal",
    "special_files",
    "glob",
    "unknown_key",
    "enum",
    "empty",
    "structure",
    "replacements",
    "output_other",
]


def _reparse(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except Exception:  # noqa: BLE001 - PyYAML's constructors fail every which way on mutated text
        return None


def command_for(rng: random.Random, recipe: str) -> tuple[str, ...]:
    """Mostly `check` of the mutated file; some see every recipe (name clashes), a few graph/status."""
    roll = rng.random()
    paths = [recipe] if rng.random() < 0.85 else []
    if roll < 0.05:
        return ("-C", WS, "graph", "--format", rng.choice(["text", "dot", "mermaid"]), *paths)
    if roll < 0.10:
        return ("-C", WS, "status", *rng.choice([[], ["--json"]]), *paths)
    flags = rng.choice([[], [], [], ["-q"], ["-v"]])
    return ("-C", WS, *flags, "check", *paths)


ALL_CASES = [make_case(n) for n in range(CASES)]


def params() -> list[Any]:
    out = []
    for case in ALL_CASES:
        known = [KNOWN[k] for k in case.kind.split("+") if k in KNOWN]
        marks = [pytest.mark.xfail(reason=known[0], strict=False)] if known else []
        out.append(pytest.param(case, id=case.id, marks=marks))
    return out


# -- running one case -------------------------------------------------------------------


class CaseTimeout(BaseException):
    """BaseException: no `except Exception` in buildsys may swallow the budget."""


@contextmanager
def time_budget(seconds: float) -> Iterator[None]:
    def expire(signum: int, frame: Any) -> None:
        raise CaseTimeout()

    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def snapshot(root: Path, ws: Path) -> dict[str, tuple]:
    """Every entry under root but build/ and .buildsys/ of the workspace: type, size, mtime."""
    allowed = {ws / "build", ws / ".buildsys"}
    seen = {}
    for top, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if Path(top, d) not in allowed]
        for name in dirs + files:
            st = os.lstat(os.path.join(top, name))
            seen[os.path.relpath(os.path.join(top, name), root)] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return seen


@dataclass
class Outcome:
    code: Any = None
    crash: str = ""
    timed_out: bool = False
    out: str = ""
    err: str = ""
    warned: list[str] = field(default_factory=list)  # Python warnings a user would see


def run(argv: list[str]) -> Outcome:
    result = Outcome()
    try:
        with time_budget(BUDGET_S), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                result.code = main(argv)
            finally:
                # Python hides these two by default; anything else reaches the terminal as a source line
                hidden = (DeprecationWarning, PendingDeprecationWarning)
                result.warned = [str(w.message) for w in caught if not issubclass(w.category, hidden)]
    except CaseTimeout:
        result.timed_out = True
    except SystemExit as exc:  # argparse
        result.code = exc.code
    except BaseException:  # noqa: BLE001 - whatever escapes is the finding
        result.crash = traceback.format_exc()
    return result


def judge(case: Case, result: Outcome, changed: list[str]) -> list[str]:
    """What is wrong with the outcome; empty when the case passes."""
    text = result.out + result.err
    wrong = []
    if result.timed_out:
        wrong.append(f"no answer within {BUDGET_S:g} s")
    if result.crash:
        wrong.append("an exception escaped main():\n" + result.crash)
    if result.code not in (0, 2) and not (result.timed_out or result.crash):
        wrong.append(f"exit {result.code!r}, wanted 0 or 2")
    if case.expect is not None and result.code != case.expect and not (result.timed_out or result.crash):
        wrong.append(f"exit {result.code!r}, wanted {case.expect}")
    wrong += [f"output says {word!r}" for word in CRASH_WORDS if word in text]
    wrong += [f"a Python warning reaches the user: {message}" for message in result.warned]
    if result.code == 2 and "error" not in result.err:
        wrong.append("exit 2 without an error message on stderr")
    elif (
        result.code == 2
        and case.kind not in ("recipe_path", "workspace")
        and not any(n in result.err for n in case.named())
    ):
        wrong.append(f"the error names none of {', '.join(case.named())}")
    lines = result.err.count("\n")
    if lines > SCREEN_LINES or len(result.err) > SCREEN_CHARS:
        wrong.append(f"the message is not one screen: {lines} lines, {len(result.err)} characters")
    if changed:
        wrong.append("written outside build/ and .buildsys/: " + ", ".join(changed[:10]))
    return wrong


def report(case: Case, result: Outcome, wrong: list[str], argv: list[str], body: bytes) -> str:
    shown = body[:3000].decode("utf-8", "backslashreplace")
    out = "\n".join((result.out + result.err).splitlines()[-40:])
    return (
        f"{case.id} (seed {SEED}): {case.what}\n"
        f"command: buildsys {' '.join(argv)}\n"
        f"problems:\n  - " + "\n  - ".join(wrong) + "\n"
        f"output (last 40 lines):\n{out[:6000]}\n"
        f"recipe {case.recipe()} ({len(body)} bytes):\n{shown}"
    )


@pytest.mark.parametrize("case", params())
def test_fuzzed_recipe(case: Case, arena: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    root, ws, outside = arena["root"], arena["ws"], arena["outside"]
    recipe = ws / case.recipe()
    original = recipe.read_bytes()
    body, argv = case.payload(ws, outside), case.command(ws, outside)
    recipe.write_bytes(body)
    saved = {name: (ws / name).read_bytes() if (ws / name).exists() else None for name, _ in case.files}
    for name, text in case.files:
        (ws / name).write_bytes(case.payload(ws, outside, text))
    try:
        before = snapshot(root, ws)
        result = run(argv)
        result.out, result.err = capsys.readouterr()
        # again: the second `check` may answer from the memo of valid recipes, and must answer the same
        again = run(argv)
        again.out, again.err = capsys.readouterr()
        after = snapshot(root, ws)
    finally:
        recipe.write_bytes(original)
        for name, old in saved.items():
            if old is None:
                (ws / name).unlink()
            else:
                (ws / name).write_bytes(old)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    wrong = judge(case, result, changed)
    if not wrong and (again.code, again.err) != (result.code, result.err):
        wrong.append(f"a second run differs: exit {again.code}, stderr:\n{again.err[-2000:]}")
    assert not wrong, report(case, result, wrong, argv, body)


def test_cases_are_reproducible() -> None:
    """The same seed makes the same cases: a reported case id is enough to rerun it."""
    again = [make_case(n) for n in (0, 1, CASES - 1)]
    assert again == [ALL_CASES[0], ALL_CASES[1], ALL_CASES[-1]]
    kinds = {c.kind.split("+")[0] for c in ALL_CASES}
    assert kinds == set(KINDS), f"kinds never drawn: {set(KINDS) - kinds}"
