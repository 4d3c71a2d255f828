"""The stage key, decided in one place: the engine's cache key, the lockfile's and status's
views of it, and doit's up-to-date check all come from here, so they cannot drift apart.

Key = sha256 of the canonical JSON of the key document: the static part (kind, VERSION,
params, the versions of the tools the stage uses) plus the content digest of every input
file, by role. Changing anything here changes every key and every committed lockfile:
bump it on purpose, with the golden values in tests/test_stage_keys.py.
"""

from __future__ import annotations

from typing import Any

from buildsys.hashing import FileHasher, digest_data
from buildsys.stages.base import Stage
from buildsys.workspace import relpath

# how the lockfile's view of a key names a file whose bytes differ between machines
VOLATILE = "volatile"


def static_doc(stage: Stage, tools: dict[str, str]) -> dict[str, Any]:
    """The key document minus input contents: what doit's config_changed sees."""
    return {
        "kind": stage.kind,
        "version": stage.VERSION,
        "params": stage.params(),
        "tools": {name: tools[name] for name in stage.tools_used()},
    }


def static_digest(stage: Stage, tools: dict[str, str]) -> str:
    """The static part as one digest: doit's config_changed value, and what a remote worker
    compares with the client's to know it plans alike."""
    return digest_data(static_doc(stage, tools))


def key_doc(
    stage: Stage, hasher: FileHasher, tools: dict[str, str], volatile: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """What the key hashes; files in `volatile` enter by name only (the lockfile's view of
    measurements, whose bytes differ between machines)."""
    doc = static_doc(stage, tools)
    doc["inputs"] = {
        inp.role: [[name, VOLATILE if str(f) in volatile else hasher.digest(f)] for name, f in inp.named()]
        for inp in stage.inputs()
    }
    return doc


def stage_key(doc: dict[str, Any]) -> str:
    return digest_data(doc)


def cache_key(stage: Stage, hasher: FileHasher, tools: dict[str, str]) -> str:
    """The key the engine stores and restores the stage's outputs under: every input by content."""
    return stage_key(key_doc(stage, hasher, tools))


def volatile_files(stages: list[Stage]) -> frozenset[str]:
    """Outputs whose bytes are not a function of their key: timings, and measurements whose
    float rounding depends on the CPU that ran them. The lock names them but pins no bytes,
    so a lock made on one machine holds on another; what they decide (a missed threshold)
    still fails the build, and a failed build writes no lock."""
    return frozenset(str(p) for s in stages for role, p in s.outputs().items() if role in s.VOLATILE)


def input_digests(stage: Stage, hasher: FileHasher, volatile: frozenset[str]) -> dict[str, str]:
    """{input path relative to the recipe: digest}, the lockfile's per-file view of the key's inputs."""
    base = stage.recipe.base
    return {relpath(f, base): VOLATILE if str(f) in volatile else hasher.digest(f) for f in stage.input_files()}
