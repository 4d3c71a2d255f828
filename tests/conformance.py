"""ONNX backend node tests through the buildsys converter (fp32 TFLite).

Cases. The onnx wheel ships the *generators* of its backend node tests
(`onnx.backend.test.case.node`, one `export*` function per case, each seeded
with `np.random.seed(0)`) but not their serialized `data/node` directory. The
cases are built in memory from those generators - the same models and data
`backend-test-tools generate-data` would write to model.onnx/test_data_set_*,
nothing downloaded and nothing cached on disk.

Claimed cases. Claimed ops are `default_registry().ops()` in the default domain.
A case belongs to every op type in its graph; a case whose graph also uses an
op the converter does not claim is skipped ("not claimed"). Cases are generated
at the opset where their op last changed; one below opset 11 (And-7, Not-1...)
runs re-declared at opset 11 when none of its ops changed in between, and is
skipped otherwise (Upsample-9).

Per case, the model goes the way a build takes it:
 1. Parameter inputs become initializers. buildsys converts prepared models,
    where what determines shapes and axes (Reshape shape, Slice starts/ends/
    axes/steps, Pad pads, Tile repeats, TopK k, Split split, Resize scales/sizes,
    reduction axes, ...) and what exporters always store as weights (Conv W/B,
    BatchNormalization statistics, Clip min/max, PRelu slope, quantization
    scales/zero points) are constants. The node tests feed them as graph inputs
    instead, so the test data value is baked into an initializer. Inputs that
    are data in real models stay inputs (Gather/Scatter indices, MatMul operands,
    Where condition...). `BAKED` lists the inputs, by the op schema's input name;
    a function-expanded case (`*_expanded`) bakes what its original op would.
 2. Inputs with dynamic dims are fixed to the test data shapes through
    `prepare_model(shapes=...)`, which also folds constants (a case can fold
    away entirely, e.g. Shape or Range on baked inputs: it then passes without
    any node reaching the converter, and is counted as "folded").
 3. `onnx_harness.convert` (Converter -> frozen float model -> fp32 TFLite),
    `Converted.run` on the test inputs in ONNX layout.
 4. Outputs are compared with the expected ones: shapes exact, integers and
    booleans exact, floats with atol = rtol = 1e-4 (NaN matches NaN).

Cases run in spawned worker processes (`-j`, default 2): a TFLite abort or
segfault costs one case, reported as "crashed", not the run.

Lists (tests/conformance/): passlist.txt holds the cases that must pass;
excluded.txt holds every other claimed case with the reason it cannot pass
(`<case> <reason>`, `#` comments). tests/test_conformance.py enforces both.

    python tests/conformance.py                # run, print a report
    python tests/conformance.py -k resize -v   # cases whose name contains "resize", one line each
    python tests/conformance.py --update       # rewrite passlist.txt, print a draft excluded.txt
    python tests/conformance.py --update --write-excluded   # ... and write it (reasons kept per case)
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

HERE = Path(__file__).resolve().parent
LISTS = HERE / "conformance"
PASSLIST = LISTS / "passlist.txt"
EXCLUDED = LISTS / "excluded.txt"
ATOL = 1e-4
RTOL = 1e-4
MIN_OPSET = 11  # the converter targets opsets 11 and up

# Inputs baked into initializers, by op type and the schema's input name (see the docstring).
BAKED: dict[str, frozenset[str]] = {
    op: frozenset(names.split())
    for op, names in {
        # shapes, axes and sizes: constant in every prepared model
        "Reshape": "shape",
        "Expand": "shape",
        "Tile": "repeats",
        "ConstantOfShape": "input",
        "Squeeze": "axes",
        "Unsqueeze": "axes",
        "ReduceSum": "axes",
        "ReduceMean": "axes",
        "ReduceMax": "axes",
        "ReduceMin": "axes",
        "ReduceProd": "axes",
        "ReduceL1": "axes",
        "ReduceL2": "axes",
        "ReduceLogSum": "axes",
        "ReduceLogSumExp": "axes",
        "ReduceSumSquare": "axes",
        "Slice": "starts ends axes steps",
        "Pad": "pads axes constant_value",
        "Split": "split",
        "TopK": "K",
        "Range": "start limit delta",
        "OneHot": "depth values",
        "CumSum": "axis",
        "Trilu": "k",
        "Resize": "roi scales sizes",
        "Upsample": "scales",
        "CenterCropPad": "shape",
        "Col2Im": "image_shape block_shape",
        "DFT": "dft_length axis",
        "STFT": "frame_step frame_length",
        "NonMaxSuppression": "max_output_boxes_per_class iou_threshold score_threshold",
        "BlackmanWindow": "size",
        "HannWindow": "size",
        "HammingWindow": "size",
        # weights and bounds: exporters store them as initializers
        "Clip": "min max",
        "PRelu": "slope",
        "Conv": "W B",
        "ConvTranspose": "W B",
        "DeformConv": "W B",
        "BatchNormalization": "scale B mean var input_mean input_var",
        "InstanceNormalization": "scale B",
        "LayerNormalization": "Scale B",
        "GroupNormalization": "scale bias",
        "RMSNormalization": "scale",
        "QuantizeLinear": "y_scale y_zero_point",
        "DequantizeLinear": "x_scale x_zero_point",
        "QLinearConv": "x_scale x_zero_point w w_scale w_zero_point y_scale y_zero_point B",
        "QLinearMatMul": "a_scale a_zero_point b_scale b_zero_point y_scale y_zero_point",
        "ConvInteger": "w x_zero_point w_zero_point",
        "LSTM": "W R B sequence_lens P",
        "GRU": "W R B sequence_lens",
        "RNN": "W R B sequence_lens",
        "MatMulInteger": "a_zero_point b_zero_point",
    }.items()
}


@dataclass(frozen=True)
class Case:
    name: str
    model: onnx.ModelProto
    data_sets: Sequence[tuple[Sequence, Sequence]]
    # an `_expanded` case's single-node original: its parameter inputs are baked too
    origin: onnx.ModelProto | None = None

    @property
    def op_types(self) -> frozenset[str]:
        return frozenset(n.op_type for n in self.model.graph.node if n.domain in ("", "ai.onnx"))

    @property
    def foreign(self) -> bool:
        return any(n.domain not in ("", "ai.onnx") for n in self.model.graph.node)

    @property
    def opset(self) -> int:
        return next((o.version for o in self.model.opset_import if o.domain in ("", "ai.onnx")), 0)


@dataclass(frozen=True)
class Outcome:
    name: str
    passed: bool
    reason: str = ""
    folded: bool = False
    seconds: float = 0.0


class Mismatch(Exception):
    """Converted outputs differ from the expected ones."""


class TracingFailed(Exception):
    """Conversion failed under tf.function; the message adds what an eager run says."""


class NotTensor(Exception):
    """The case feeds or expects sequences, maps or optionals."""


# -- cases ---------------------------------------------------------------------
def generate_cases() -> list[Case]:
    """Every ONNX backend node case, built by the wheel's own generators (~10 s)."""
    from onnx.backend.test.case.node import collect_testcases

    # the generators deliberately overflow casts and divide by zero
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        found = [c for c in collect_testcases() if c.kind == "node"]
    models = {c.name: c.model for c in found}
    return [Case(c.name, c.model, c.data_sets, models.get(_unexpanded(c.name))) for c in found]


def _unexpanded(name: str) -> str:
    """test_x_expanded[_verN] -> test_x: the function-expanded variant keeps the original's input names."""
    base = re.sub(r"_expanded(_ver\d+)?$", "", name)
    return base if base != name else ""


def claimed_ops() -> frozenset[str]:
    from buildsys.converter.registry import default_registry

    return frozenset(op for domain, op, _ in default_registry().ops() if domain == "")


def split_claimed(cases: Iterable[Case], ops: frozenset[str]) -> tuple[list[Case], dict[str, str]]:
    """(claimed cases, {skipped case: why}); a claimed case uses at least one claimed op and only claimed ops."""
    claimed, skipped = [], {}
    for case in cases:
        used = case.op_types
        if not used & ops:
            continue
        unclaimed = sorted(used - ops)
        if case.foreign or unclaimed:
            skipped[case.name] = "not claimed: " + ", ".join(unclaimed or ["custom domain"])
        elif case.opset < MIN_OPSET and not same_at_min_opset(case):
            skipped[case.name] = f"opset {case.opset} < {MIN_OPSET}, and its ops changed since"
        else:
            claimed.append(at_least_min_opset(case))
    return claimed, skipped


def same_at_min_opset(case: Case) -> bool:
    """Every op of the case has the same definition at MIN_OPSET as at the case's opset."""

    def since(op: str, opset: int) -> int:
        return onnx.defs.get_schema(op, max_inclusive_version=opset, domain="").since_version

    return all(since(op, case.opset) == since(op, MIN_OPSET) for op in case.op_types)


def at_least_min_opset(case: Case) -> Case:
    """Cases for ops unchanged since before opset 11 (And-7, Not-1...) re-declared at opset 11."""
    if case.opset >= MIN_OPSET:
        return case
    model = onnx.ModelProto()
    model.CopyFrom(case.model)
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            o.version = MIN_OPSET
    return Case(case.name, model, case.data_sets, case.origin)


def cases_by_op(cases: Iterable[Case], ops: frozenset[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for case in cases:
        for op in sorted(case.op_types & ops):
            out[op].append(case.name)
    return dict(out)


# -- one case ------------------------------------------------------------------
def run_case(case: Case) -> Outcome:
    start = time.perf_counter()
    folded = False
    try:
        for inputs, expected in case.data_sets:
            folded = _run_data_set(case, inputs, expected) or folded
    except Exception as exc:  # noqa: BLE001 - every failure becomes a reason in the report
        return Outcome(case.name, False, failure_reason(exc), seconds=time.perf_counter() - start)
    return Outcome(case.name, True, folded=folded, seconds=time.perf_counter() - start)


def _run_data_set(case: Case, inputs: Sequence, expected: Sequence) -> bool:
    """Convert and compare one data set; True when prepare folded every node away."""
    from onnx_harness import convert

    from buildsys.errors import StageError
    from buildsys.onnxprep.prepare import prepare_model

    graph = case.model.graph
    feeds = {v.name: _array(x, v.name) for v, x in zip(graph.input, inputs)}
    wants = {v.name: _array(x, v.name) for v, x in zip(graph.output, expected)}
    model, feeds = bake_parameters(case.model, feeds, case.origin)
    shapes = {name: list(a.shape) for name, a in feeds.items() if _is_dynamic(model, name)}
    prepared = prepare_model(model, shapes=shapes or None, label=case.name)
    try:
        got = convert(prepared).run(feeds)
    except StageError as exc:
        if not str(exc).startswith("cannot convert"):
            raise
        # export_onnx keeps only the last line of a tracing error, often just source text
        raise TracingFailed(f"{str(exc).splitlines()[0]}; eager: {eager_outcome(prepared, feeds, wants)}") from None
    compare(got, wants)
    return not any(n.op_type in case.op_types for n in prepared.graph.node)


def eager_outcome(prepared: onnx.ModelProto, feeds: dict, wants: dict) -> str:
    """What the same conversion does run eagerly (no tf.function tracing): the real error, or its result."""
    from buildsys.converter.convert import Converter, convert_arrays

    try:
        compare(convert_arrays(Converter(prepared, label="model"), feeds), wants)
    except Exception as exc:  # noqa: BLE001 - reported as text
        return failure_reason(exc)
    return "passes"


def _array(value, name: str) -> np.ndarray:
    if isinstance(value, onnx.TensorProto):
        return numpy_helper.to_array(value)
    if isinstance(value, np.ndarray) or np.isscalar(value):
        return np.asarray(value)
    raise NotTensor(f"{name!r} is a {type(value).__name__}, not a tensor (sequence/map/optional types)")


def bake_parameters(
    model: onnx.ModelProto, feeds: dict[str, np.ndarray], origin: onnx.ModelProto | None = None
) -> tuple[onnx.ModelProto, dict]:
    """Move the graph inputs that feed a BAKED slot (in `model` or `origin`) into initializers holding the test value."""
    names = (parameter_inputs(model) | (parameter_inputs(origin) if origin else set())) & set(feeds)
    if not names:
        return model, feeds
    out = onnx.ModelProto()
    out.CopyFrom(model)
    kept = [v for v in out.graph.input if v.name not in names]
    del out.graph.input[:]
    out.graph.input.extend(kept)
    out.graph.initializer.extend(numpy_helper.from_array(feeds[n], n) for n in sorted(names))
    return out, {n: a for n, a in feeds.items() if n not in names}


def parameter_inputs(model: onnx.ModelProto) -> set[str]:
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
    found = set()
    for node in model.graph.node:
        wanted = BAKED.get(node.op_type)
        if not wanted or node.domain not in ("", "ai.onnx"):
            continue
        formal = _input_names(node.op_type, opset)
        for i, name in enumerate(node.input):
            if name and formal[min(i, len(formal) - 1)] in wanted:
                found.add(name)
    return found


def _input_names(op_type: str, opset: int) -> list[str]:
    schema = onnx.defs.get_schema(op_type, max_inclusive_version=opset, domain="")
    return [p.name for p in schema.inputs]


def _is_dynamic(model: onnx.ModelProto, name: str) -> bool:
    for v in model.graph.input:
        if v.name == name:
            t = v.type.tensor_type
            return not t.HasField("shape") or any(not d.HasField("dim_value") for d in t.shape.dim)
    return False


def compare(got: dict[str, np.ndarray], wants: dict[str, np.ndarray]) -> None:
    if sorted(got) != sorted(wants):
        raise Mismatch(f"outputs {sorted(got)} != expected {sorted(wants)}")
    for name, want in wants.items():
        have = np.asarray(got[name])
        if have.shape != want.shape:
            raise Mismatch(f"{name}: shape {list(have.shape)} != expected {list(want.shape)}")
        if want.dtype.kind in "biu":
            bad = np.count_nonzero(have.astype(want.dtype) != want)
            if bad:
                raise Mismatch(f"{name}: {bad}/{want.size} integer values differ")
        elif want.dtype.kind in "fc":
            _compare_float(name, have, want)
        else:
            raise NotTensor(f"{name}: expected a {want.dtype} output, not numbers")


def _compare_float(name: str, have: np.ndarray, want: np.ndarray) -> None:
    have, want = have.astype(np.float64), want.astype(np.float64)
    close = np.isclose(have, want, atol=ATOL, rtol=RTOL, equal_nan=True)
    if close.all():
        return
    err = np.abs(have - want)[~close]
    finite = err[np.isfinite(err)]
    worst = f"max abs err {finite.max():.3g}" if finite.size else "inf/nan differ"
    raise Mismatch(f"{name}: {np.count_nonzero(~close)}/{want.size} values off, {worst}")


def failure_reason(exc: BaseException) -> str:
    """One line: the UnsupportedModel table's reason column, or the error's first line."""
    from buildsys.converter.errors import UnsupportedModel

    if isinstance(exc, UnsupportedModel):
        r = exc.rejected[0]
        more = f" (+{len(exc.rejected) - 1} more)" if len(exc.rejected) > 1 else ""
        return f"unsupported {r.op_type}: {r.reason}{more}"
    if isinstance(exc, Mismatch):
        return f"mismatch {exc}"
    if isinstance(exc, NotTensor):
        return f"not a tensor: {exc}"
    if isinstance(exc, TracingFailed):
        return f"StageError: {exc}"
    text = str(exc).strip()
    line = text.splitlines()[0] if text else ""
    # the temporary float model's path differs per run
    line = re.sub(r" of /\S+/float\.pb", "", line)
    return f"{type(exc).__name__}: {line}"


def run_all(cases: Sequence[Case], jobs: int = 1, progress=None) -> list[Outcome]:
    """Outcomes in case order, computed in `jobs` spawned worker processes.

    Workers, not this process: a TFLite or TensorFlow crash (abort, segfault) then
    costs one case, reported as "crashed", instead of the whole run. Each worker
    imports TensorFlow once (~5 s), then takes ~0.2 s of CPU per case."""
    import multiprocessing
    from multiprocessing.connection import wait

    mp = multiprocessing.get_context("spawn")  # a forked TensorFlow runtime is not safe to use
    todo = list(reversed(range(len(cases))))
    results: dict[int, Outcome] = {}
    workers = [_Worker(mp) for _ in range(max(1, min(jobs, len(cases))))]
    try:
        while len(results) < len(cases):
            for w in workers:
                if w.case is None and todo:
                    w.send(todo.pop(), cases)
            busy = [w for w in workers if w.case is not None]
            ready = wait([x for w in busy for x in (w.conn, w.process.sentinel)], timeout=CASE_TIMEOUT)
            for w in busy:
                outcome = w.collect(ready, cases)
                if outcome is None:
                    continue
                results[w.case] = _noted(outcome, progress)
                w.case = None
                if not w.process.is_alive():
                    workers[workers.index(w)] = _Worker(mp)
    finally:
        for w in workers:
            w.stop()
    return [results[i] for i in range(len(cases))]


CASE_TIMEOUT = 300  # s without any worker answering: the busy cases are reported as hung


class _Worker:
    """One spawned process converting cases sent over a pipe, one at a time."""

    def __init__(self, mp):
        self.conn, child = mp.Pipe()
        self.process = mp.Process(target=_serve, args=(child, list(sys.path)), daemon=True)
        self.process.start()
        child.close()
        self.case: int | None = None
        self.sent = 0.0

    def send(self, index: int, cases: Sequence[Case]) -> None:
        self.case, self.sent = index, time.perf_counter()
        self.conn.send(cases[index])

    def collect(self, ready: list, cases: Sequence[Case]) -> Outcome | None:
        """The outcome of the case in hand, a crash/hang outcome, or None while it runs."""
        name = cases[self.case].name
        if self.conn in ready:
            try:
                return self.conn.recv()
            except (EOFError, OSError):
                pass
        elif self.process.sentinel not in ready:
            if time.perf_counter() - self.sent < CASE_TIMEOUT:
                return None
            self.process.kill()
            self.process.join(5)
            return Outcome(name, False, f"hung: no result after {CASE_TIMEOUT} s")
        self.process.join(5)
        return Outcome(name, False, f"crashed: worker exit code {self.process.exitcode}")

    def stop(self) -> None:
        if self.process.is_alive():
            try:
                self.conn.send(None)
            except OSError:
                pass
            self.process.join(10)
        if self.process.is_alive():
            self.process.kill()


def _serve(conn, path: list[str]) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path[:] = path
    while (case := conn.recv()) is not None:
        conn.send(run_case(case))


def _noted(outcome: Outcome, progress) -> Outcome:
    if progress:
        progress(outcome)
    return outcome


def default_jobs() -> int:
    """CONFORMANCE_JOBS, else one worker per core up to 2 (the target machine has 2)."""
    return int(os.environ.get("CONFORMANCE_JOBS") or min(2, os.cpu_count() or 1))


# -- lists ---------------------------------------------------------------------
def read_passlist(path: Path = PASSLIST) -> list[str]:
    return [line for line in _lines(path)]


def read_excluded(path: Path = EXCLUDED) -> dict[str, str]:
    """{case: reason}; a line is `<case> <reason>`."""
    out = {}
    for line in _lines(path):
        name, _, reason = line.partition(" ")
        out[name] = reason.strip()
    return out


def _lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    text = path.read_text()
    return [s for s in (line.split(" #", 1)[0].strip() for line in text.splitlines()) if s and not s.startswith("#")]


def write_passlist(names: Iterable[str], path: Path = PASSLIST) -> None:
    header = (
        "# ONNX backend node cases that must pass through the converter (tests/test_conformance.py).\n"
        "# Regenerate with: python tests/conformance.py --update\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "".join(f"{n}\n" for n in sorted(names)))


# -- failure categories for the draft exclusion list ----------------------------
# A failing case's reason names what about the case TFLite or buildsys cannot do,
# so failures group by cause; what no rule explains is drafted as "TODO <error>".
EXOTIC = ("int2", "uint2", "int4", "uint4", "float4e2m1", "float8")
NARROW_INTS = ("int8", "uint8", "int16", "uint16", "uint32", "uint64")


def case_types(case: Case) -> set[str]:
    """Element type names of the graph's inputs and outputs ("non-tensor" for sequences etc.)."""
    out = set()
    for v in [*case.model.graph.input, *case.model.graph.output]:
        if v.type.HasField("tensor_type"):
            out.add(helper.tensor_dtype_to_string(v.type.tensor_type.elem_type).split(".")[-1].lower())
        else:
            out.add("non-tensor")
    return out


def has_empty_tensor(case: Case) -> bool:
    """A zero-size input or output; empty parameters (no axes = all axes) do not count."""
    params = parameter_inputs(case.model) | (parameter_inputs(case.origin) if case.origin else set())
    graph = case.model.graph
    for inputs, outputs in case.data_sets:
        values = [a for v, a in zip(graph.input, inputs) if v.name not in params] + list(outputs)
        if any(isinstance(a, np.ndarray) and a.size == 0 for a in values):
            return True
    return False


def category(case: Case, outcome: Outcome) -> str:
    """A human reason for a failing case: what about the case fails, not only the error text."""
    types, reason = case_types(case), outcome.reason
    flex = re.search(r"'tf\.(\w+)' op is neither a custom op nor a flex op", reason)
    rules = [
        ("non-tensor" in types, "sequence/map/optional types"),
        ("string" in types, "string tensors"),
        (any(t.startswith(EXOTIC) for t in types), "float8/float4/int4/int2 tensors: not TFLite tensor types"),
        ("bfloat16" in types, "bfloat16 tensors: no TFLite kernels"),
        ("training_dropout" in case.name, "training-mode Dropout is random"),
        (
            has_empty_tensor(case) or "Invalid tensor size" in reason,
            "zero-size tensors: TFLite cannot allocate empty tensors",
        ),
        ("double" in types, "float64 tensors: TFLite has no float64 kernels"),
        ("float16" in types, "float16 tensors: a fp32 TFLite model has no float16 kernels"),
    ]
    for hit, why in rules:
        if hit:
            return why
    narrow = sorted(t for t in types if t in NARROW_INTS)
    if flex and narrow:
        return f"{narrow[0]} tensors: no TFLite builtin kernel for this type"
    handler = re.match(r"unsupported (\w+): (.*?)( \(\+\d+ more\))?$", reason)
    if handler:
        return f"{handler.group(1)}: {handler.group(2)}"
    return "TODO " + reason


def _generic(reason: str) -> str:
    # numbers and quoted names vary per case; drop them so reasons group
    reason = re.sub(r"'[^']*'", "'…'", reason)
    return re.sub(r"\d+(\.\d+)?(e-?\d+)?", "N", reason)


def draft_excluded(cases: dict[str, Case], outcomes: list[Outcome], previous: dict[str, str]) -> str:
    """excluded.txt text: kept reasons for still-failing cases, drafted ones for new failures, grouped by cause."""
    groups: dict[str, list[str]] = defaultdict(list)
    for o in outcomes:
        if not o.passed:
            reason = previous.get(o.name) or category(cases[o.name], o)
            groups[_generic(reason)].append(f"{o.name} {reason}")
    lines = [
        "# Claimed ONNX backend node cases that do not pass, and why (enforced by tests/test_conformance.py).",
        "# Format: <case> <reason>; reasons starting with TODO are drafts to review.",
        "",
    ]
    for cause in sorted(groups, key=lambda c: (c.startswith("TODO"), -len(groups[c]), c)):
        entries = sorted(groups[cause])
        reasons = Counter(e.partition(" ")[2] for e in entries)
        header = reasons.most_common(1)[0][0] + (" ..." if len(reasons) > 1 else "")
        lines += [f"# {header} ({len(entries)})", *entries, ""]
    return "\n".join(lines)


# -- report --------------------------------------------------------------------
def report(
    claimed: list[Case], outcomes: list[Outcome], ops: frozenset[str], skipped: dict[str, str], partial: bool = False
) -> str:
    by_name = {o.name: o for o in outcomes}
    passed = [o for o in outcomes if o.passed]
    lines = [
        f"claimed ops: {len(ops)}; claimed cases: {len(claimed)}; skipped (graph uses unclaimed ops / old opset): "
        f"{len(skipped)}",
        f"pass {len(passed)}/{len(outcomes)} ({sum(o.folded for o in passed)} folded away by prepare); "
        f"{sum(o.seconds for o in outcomes):.1f} s in cases",
        "",
        "per op (pass/total):",
    ]
    for op, names in sorted(cases_by_op(claimed, ops).items()):
        ran = [by_name[n] for n in names if n in by_name]
        lines.append(f"  {op:24s} {sum(o.passed for o in ran):3d}/{len(ran)}")
    missing = sorted(ops - set(cases_by_op(claimed, ops)))
    if missing and not partial:
        lines.append(f"  claimed ops without runnable cases: {', '.join(missing)}")
    lines += ["", "failures by cause:"]
    cases, listed = {c.name: c for c in claimed}, read_excluded()
    counts = Counter(_generic(listed.get(o.name) or category(cases[o.name], o)) for o in outcomes if not o.passed)
    lines += [f"  {n:4d}  {r}" for r, n in counts.most_common()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--update", action="store_true", help="rewrite passlist.txt; print a draft excluded.txt")
    parser.add_argument("--write-excluded", action="store_true", help="with --update: also write excluded.txt")
    parser.add_argument("-k", default="", help="only cases whose name contains this")
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per case")
    parser.add_argument(
        "-j", "--jobs", type=int, default=default_jobs(), help="worker processes (default: %(default)s)"
    )
    args = parser.parse_args(argv)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(HERE.parent))
    ops = claimed_ops()
    claimed, skipped = split_claimed(generate_cases(), ops)
    selected = [c for c in claimed if args.k in c.name]

    def progress(o: Outcome) -> None:
        if args.verbose:
            print(f"{'PASS' if o.passed else 'FAIL'} {o.name} {o.seconds:.2f}s {o.reason}", flush=True)

    outcomes = run_all(selected, args.jobs, progress)
    print(report(selected, outcomes, ops, skipped, partial=bool(args.k)))
    if args.update:
        if args.k:
            parser.error("--update runs every claimed case; drop -k")
        write_passlist(o.name for o in outcomes if o.passed)
        draft = draft_excluded({c.name: c for c in claimed}, outcomes, read_excluded())
        if args.write_excluded:
            EXCLUDED.write_text(draft)
        print("\n--- draft excluded.txt ---\n" + draft)
    return 0


if __name__ == "__main__":
    sys.exit(main())
