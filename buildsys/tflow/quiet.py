"""Keep TensorFlow's C++ and absl log spam off the user's terminal.

TF reads TF_CPP_MIN_LOG_LEVEL once, when its C++ runtime first logs (at import),
so setting it later does not help; the converter and the interpreter also print
straight to file descriptor 2. The only reliable way to silence them is to point
fd 2 at a temporary file for the duration of the call. The captured text is kept
so that a failure can still quote the converter's own error line.

TensorFlow also logs while it loads (oneDNN, absl, CPU feature guard), from C++,
whatever TF_CPP_MIN_LOG_LEVEL says, in whichever process first imports it: the
CLI or a doit worker. `filter_tensorflow_import` makes every later import of
`tensorflow` in this process (and in processes forked from it) run with fd 2
filtered: that noise is dropped, anything else written meanwhile passed on.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import logging
import os
import re
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator

# fd 2 is process-wide: two threads redirecting it at once would restore each
# other's temp files and lose stderr for good, so redirections are serialised.
# Re-entrant because quiet() blocks nest (export wraps loading).
_FD2_LOCK = threading.RLock()

# Lines that carry no information for a user even when a conversion fails.
_NOISE_MARKERS = (
    "All log messages before absl::InitializeLog()",
    "oneDNN custom operations are on",
    "cpu_feature_guard",
    "This TensorFlow binary is optimized to use available CPU instructions",
    "To enable the following instructions",
    "rebuild TensorFlow with the appropriate compiler flags",
)
# Modules whose loading logs the noise above: the C++ runtime comes up with them.
_NOISY_IMPORTS = frozenset({"tensorflow"})


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_ERROR_LINE = re.compile(r"^[A-Za-z_.]*(?:Error|Exception): (.+)$")
_TRACEBACK_LINE = re.compile(r'^(File ".*", line \d+|in user code:)')


class Captured:
    """Text written to stderr while `quiet()` was active (filled in on exit)."""

    def __init__(self) -> None:
        self.text = ""

    def lines(self) -> list[str]:
        return [ln for ln in self.text.splitlines() if ln.strip() and not _is_noise(ln)]


@contextlib.contextmanager
def no_interpreter_warning() -> Iterator[None]:
    """Hide tf.lite.Interpreter's "deprecated, use ai_edge_litert" UserWarning.

    We fall back to tf.lite.Interpreter knowingly when ai_edge_litert is not
    installed (and the int8 converter creates one internally), so the warning
    says nothing actionable; it is filtered only inside this block.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"(?s).*tf\.lite\.Interpreter is deprecated", category=UserWarning)
        yield


def _is_noise(line: str) -> bool:
    return any(marker in line for marker in _NOISE_MARKERS)


@contextlib.contextmanager
def quiet() -> Iterator[Captured]:
    """Silence C++/absl/Python logging on stderr; yields what was written."""
    with _absl_level(logging.ERROR), _fd2_captured() as captured:
        yield captured


@contextlib.contextmanager
def noise_filtered() -> Iterator[None]:
    """fd 2 minus TensorFlow's known noise: other lines are written once the block ends."""
    captured = None
    try:
        with _fd2_captured() as captured:
            yield
    finally:
        kept = [ln for ln in (captured.text if captured else "").splitlines(keepends=True) if not _is_noise(ln)]
        if kept:
            os.write(2, "".join(kept).encode("utf-8", errors="replace"))


def filter_tensorflow_import() -> None:
    """Import TensorFlow under `noise_filtered` from now on, wherever it is first imported.

    Stages import it lazily (a no-op build never does), in the CLI process or in a
    doit worker forked from it, so the filter is an import hook, installed once."""
    if not any(isinstance(finder, _FilteredImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _FilteredImport(_NOISY_IMPORTS))


class _FilteredImport(importlib.abc.MetaPathFinder):
    """Finds `names` through the other finders and loads them under `noise_filtered`."""

    def __init__(self, names: frozenset[str]):
        self.names = names

    def find_spec(self, fullname, path, target=None):
        if fullname not in self.names:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _FilteredLoader(spec.loader)
                return spec
        return None


class _FilteredLoader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        # the module keeps its real loader: nothing after the import sees this wrapper
        module.__loader__ = module.__spec__.loader = self.loader
        with noise_filtered():
            self.loader.exec_module(module)


@contextlib.contextmanager
def _fd2_captured() -> Iterator[Captured]:
    """fd 2 into a temporary file for the block; yields what was written (filled in on exit)."""
    captured = Captured()
    with _FD2_LOCK, tempfile.TemporaryFile(mode="w+b") as sink:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.text = sink.read().decode("utf-8", errors="replace")


@contextlib.contextmanager
def _absl_level(level: int) -> Iterator[None]:
    """Raise the absl/tensorflow Python loggers' threshold, then restore it."""
    loggers = [logging.getLogger(name) for name in ("absl", "tensorflow")]
    before = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(level, lg.getEffectiveLevel()))
    try:
        yield
    finally:
        for lg, lvl in zip(loggers, before):
            lg.setLevel(lvl)


def last_error_line(exc: BaseException, captured: Captured | None = None) -> str:
    """One short, meaningful line explaining why TF failed.

    Converter errors embed MLIR diagnostics, where the first "error:" line names
    the op that failed; tf.function/Keras errors wrap the real "XError: ..." line
    in tracebacks and argument dumps.
    """
    lines = _clean_lines(str(exc)) + (captured.lines() if captured else [])
    for line in lines:
        if " error: " in line or line.startswith("error: "):
            return _shorten(line.split("error: ", 1)[1])
    wrapped = _wrapped_error(_clean_lines(str(exc)))
    if wrapped:
        return _shorten(wrapped)
    meaningful = [ln for ln in _clean_lines(str(exc)) if not _TRACEBACK_LINE.match(ln)]
    return _shorten(meaningful[0]) if meaningful else type(exc).__name__


def _clean_lines(text: str) -> list[str]:
    text = _ANSI.sub("", text)
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not _is_noise(ln)]


def _wrapped_error(lines: list[str]) -> str | None:
    """The last "SomeError: message" line; Keras puts the message on the next line."""
    for i in range(len(lines) - 1, -1, -1):
        match = _ERROR_LINE.match(lines[i])
        if match:
            message = match.group(1)
            if message.startswith("Exception encountered when calling") and i + 1 < len(lines):
                return lines[i + 1]
            return message
    return None


def _shorten(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
