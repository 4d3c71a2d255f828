"""Run a TensorFlow call in a child process so that a crash cannot kill the build.

Some converter paths segfault instead of raising (TF 2.21's calibrator on
Keras RNN while loops: tensorflow/tensorflow#75140). In a child process a crash
becomes a StageError, and buildsys errors raised by the child are re-raised.

The child is `python -m buildsys.tflow.isolate <request> <reply>`, not a
multiprocessing "spawn" child: spawn re-imports the parent's __main__, which
for `python -m buildsys` would start the CLI again. Request and reply are
pickles in a private temporary directory that only this process writes.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from buildsys.errors import BuildsysError, InputError, StageError

# Error classes a child may send back, by name. Exceptions with keyword-only
# fields do not survive pickling intact, so their fields travel instead.
_ERRORS = {cls.__name__: cls for cls in (InputError, StageError)}


def run_isolated(what: str, fn: Callable, *args):
    """fn(*args) in a fresh Python process; `fn` must be a module-level function."""
    with tempfile.TemporaryDirectory(prefix="buildsys-isolate-") as tmp:
        request, reply = Path(tmp) / "request.pkl", Path(tmp) / "reply.pkl"
        request.write_bytes(pickle.dumps((fn, args), protocol=pickle.HIGHEST_PROTOCOL))
        proc = subprocess.run(
            [sys.executable, "-m", __name__, str(request), str(reply)],
            env=_child_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            check=False,
        )
        if not reply.exists():
            raise _crash(what, proc)
        kind, payload = pickle.loads(reply.read_bytes())
    if kind == "ok":
        return payload
    name, message, hint, path = payload
    raise _ERRORS.get(name, StageError)(message, hint=hint, path=path)


def _child_env() -> dict[str, str]:
    # The child must import buildsys from wherever this process did.
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return env


def _crash(what: str, proc: subprocess.CompletedProcess) -> StageError:
    code = proc.returncode
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return StageError(
            f"{what} crashed inside TensorFlow (killed by {name})",
            hint="a known TF bug for while loops (Keras RNNs): export with unroll=True, or use fp16",
        )
    # No reply and no signal: the child could not even start the work.
    last = (proc.stderr.decode("utf-8", errors="replace").strip().splitlines() or ["no output"])[-1]
    return StageError(f"{what} failed in its child process (exit code {code}): {last}")


def _serve(request: Path, reply: Path) -> None:
    fn, args = pickle.loads(request.read_bytes())
    try:
        result = ("ok", fn(*args))
    except BuildsysError as exc:
        result = ("error", (type(exc).__name__, exc.message, exc.hint, exc.path))
    except Exception as exc:  # noqa: BLE001 - reported to the parent as a stage error
        first = (str(exc).splitlines() or [""])[0]
        result = ("error", ("StageError", f"{type(exc).__name__}: {first}", None, None))
    # Written under a temp name so a crash mid-write never looks like a reply.
    partial = reply.with_suffix(".partial")
    partial.write_bytes(pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
    partial.replace(reply)


if __name__ == "__main__":
    _serve(Path(sys.argv[1]), Path(sys.argv[2]))
