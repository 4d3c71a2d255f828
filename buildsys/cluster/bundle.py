"""What a Dask worker needs to plan a build the client planned: a small picklable bundle.

Workers share no file system with the client, only the remote cache. So the client
uploads every *source* input of the plan (the model, calibration images; not files
another stage writes) to the remote as objects by sha256, and the bundle carries
their workspace-relative paths and digests, the text of the files planning reads
(recipes, buildsys.yaml, device profile files), the remote's config and the
client's stage fingerprints. A worker materialises it into a scratch workspace,
verifying every object, and plans the same recipes there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from buildsys.errors import StageError, UsageError
from buildsys.fsutil import atomic_write_bytes
from buildsys.hashing import digest_data, digest_file
from buildsys.plan import Plan
from buildsys.remote.config import SETTINGS_FILE, RemoteConfig
from buildsys.remote.store import RemoteStore
from buildsys.stages.keys import static_digest

# written last into a scratch workspace: every file before it is verified
COMPLETE = ".buildsys-bundle-complete"


@dataclass(frozen=True)
class Bundle:
    files: dict[str, str]  # workspace-relative path -> sha256 of a source input (bytes on the remote)
    texts: dict[str, bytes]  # workspace-relative path -> bytes of a file planning reads
    recipes: dict[str, str]  # recipe name -> its file: a task plans only its own recipe
    remote: RemoteConfig  # with the HMAC secret: workers sign what they push
    tools: dict[str, str]  # the client's tool versions, to tell a mismatched worker
    compilers: dict[str, Any]  # compile stage -> compiler version the build uses
    statics: dict[str, str]  # stage -> digest of its static key document on the client

    @property
    def digest(self) -> str:
        """Names the scratch workspace: the same sources and recipes reuse one per worker."""
        texts = {path: digest_data(data.hex()) for path, data in self.texts.items()}
        return digest_data(
            [self.files, texts, sorted(self.recipes.items()), self.remote.url, self.tools, self.compilers]
        )


def make_bundle(plan: Plan) -> Bundle:
    """Upload the plan's source inputs (those the remote lacks) and describe the rest."""
    root = plan.env.ws.root
    store = RemoteStore(plan.env.shared_cache())
    files = {}
    for path in source_files(plan):
        sha = digest_file(path)
        if not store.has(store.object_path(sha)):
            store.upload(path, store.object_path(sha))
        files[_inside(root, path)] = sha
    texts = {_inside(root, p): p.read_bytes() for p in planning_files(plan)}
    from buildsys.stages.compile import Compile

    return Bundle(
        files=files,
        texts=texts,
        recipes={rp.recipe.name: _inside(root, rp.recipe.path) for rp in plan.recipes},
        remote=plan.env.shared_cache(),
        tools=dict(plan.env.tools),
        compilers={s.task_name: s.version for s in plan.stages() if isinstance(s, Compile)},
        statics={s.task_name: static_digest(s, plan.env.tools) for s in plan.stages()},
    )


def source_files(plan: Plan) -> list[Path]:
    """Input files no stage of the plan writes, each once."""
    written = {str(p) for s in plan.stages() for p in s.outputs().values()}
    found = {str(f): f for s in plan.stages() for f in s.input_files() if str(f) not in written}
    return [found[name] for name in sorted(found)]


def planning_files(plan: Plan) -> list[Path]:
    """Files make_plan reads besides the sources: recipes, the settings file, device profiles."""
    from buildsys.devices.catalogue import is_profile_path

    paths = [rp.recipe.path for rp in plan.recipes]
    settings = plan.env.ws.root / SETTINGS_FILE
    if settings.is_file():
        paths.append(settings)
    for rp in plan.recipes:
        for target in rp.recipe.targets:
            if is_profile_path(target.device):
                paths += _profile_chain(rp.recipe.base / target.device)
    return list(dict.fromkeys(Path(os.path.abspath(p)) for p in paths))


def _profile_chain(path: Path) -> list[Path]:
    """A profile file and the files it extends (a built-in name ends the chain)."""
    import yaml

    from buildsys.devices.catalogue import is_profile_path

    chain: list[Path] = []
    while path.is_file() and path not in chain:
        chain.append(path)
        data = yaml.safe_load(path.read_text("utf-8"))
        spec = data.get("extends") if isinstance(data, dict) else None
        if not isinstance(spec, str) or not is_profile_path(spec):
            break
        path = Path(os.path.abspath(path.parent / spec))
    return chain


def _inside(root: Path, path: Path) -> str:
    rel = os.path.relpath(os.path.abspath(path), root)
    if rel.startswith(".." + os.sep) or rel == ".." or os.path.isabs(rel):
        raise UsageError(
            f"--scheduler: {path} is outside the workspace {root}, so a worker cannot be given it",
            hint="move the file into the workspace (a recipe may name it by a relative path)",
        )
    return Path(rel).as_posix()


# -- on the worker -------------------------------------------------------------------
def materialise(bundle: Bundle, root: Path) -> None:
    """Write the bundle's files under `root` once; later tasks on this worker reuse them.

    Several tasks of one worker may do this at once: every file is written
    atomically, and the marker that says "complete" is written last."""
    if (root / COMPLETE).is_file():
        return
    store = RemoteStore(bundle.remote)
    for rel, sha in sorted(bundle.files.items()):
        dest = root / rel
        if not (dest.is_file() and digest_file(dest) == sha):
            _download(store, sha, dest)
    for rel, data in bundle.texts.items():
        atomic_write_bytes(root / rel, data)
    atomic_write_bytes(root / COMPLETE, b"")


def _download(store: RemoteStore, sha: str, dest: Path) -> None:
    _, why = store.fetch_object(sha, dest)
    if why:
        raise StageError(f"the source file {dest.name} ({sha[:12]}...) on the remote cache {why}")
