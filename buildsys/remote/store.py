"""The remote store on fsspec: the same layout as the local cache, one level up.

  <url>/objects/ab/<sha256>    file contents, named by their full sha256
  <url>/keys/<stage key>.json  {"format", "key", "outputs", "seconds", "sig"}
  <url>/times/<slot>.json      {task: seconds} of a build's stages, for shard balancing

Every call may raise RemoteUnavailable (the remote could not be asked); a missing
file is None or False, never an error. Writes are atomic: object stores make a PUT
visible whole, and on a file system a temp name is renamed into place, so a
reader never sees half an object or a manifest before its objects.
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from buildsys.errors import BuildsysError
from buildsys.fsutil import remove
from buildsys.hashing import digest_file
from buildsys.remote.config import RemoteConfig

FORMAT = 1


class RemoteUnavailable(BuildsysError):
    """The remote failed (unreachable, slow, refused, out of space): the build goes on locally."""


class RemoteStore:
    def __init__(self, config: RemoteConfig):
        self.config = config
        self._fs: Any = None
        self._root = ""

    # -- the file system ------------------------------------------------------------
    @property
    def fs(self) -> Any:
        if self._fs is None:
            self._fs, self._root = _open(self.config)
        return self._fs

    def path(self, *parts: str) -> str:
        self.fs  # noqa: B018 -- sets _root
        return "/".join([self._root.rstrip("/"), *parts])

    def object_path(self, sha: str) -> str:
        return self.path("objects", sha[:2], sha)

    def manifest_path(self, key: str) -> str:
        return self.path("keys", f"{key}.json")

    # -- reads -------------------------------------------------------------------------
    def read_json(self, path: str) -> Any:
        """The parsed document; None if absent; ValueError if it is not JSON."""
        with _asking(self):
            try:
                raw = self.fs.cat_file(path)
            except FileNotFoundError:
                return None
        return json.loads(raw)

    def has(self, path: str) -> bool:
        with _asking(self):
            return bool(self.fs.exists(path))

    def download(self, path: str, dest: Path) -> bool:
        """False if the remote has no such file."""
        with _asking(self):
            try:
                self.fs.get_file(path, str(dest))
            except FileNotFoundError:
                return False
        return True

    def fetch_object(self, sha: str, dest: Path, size: int | None = None) -> tuple[int, str | None]:
        """Object `sha` into `dest`, only once it hashes right: (bytes moved, why it was not)."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".pull-", dir=dest.parent)  # beside: the rename is atomic
        os.close(fd)
        tmp = Path(name)
        try:
            if not self.download(self.object_path(sha), tmp):
                return 0, "is missing from the remote"
            moved = tmp.stat().st_size
            if (size is not None and moved != size) or digest_file(tmp) != sha:
                return moved, "does not match its sha256"
            os.replace(tmp, dest)
            return moved, None
        finally:
            remove(tmp)

    def listing(self, folder: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """(path, info) of every file under `folder` of the store."""
        with _asking(self):
            try:
                found = self.fs.find(self.path(folder), detail=True)
            except FileNotFoundError:
                return iter(())
        return iter(sorted(found.items()))

    # -- writes ------------------------------------------------------------------------
    def upload(self, src: Path, path: str) -> None:
        with _asking(self):
            if self._local:
                tmp = f"{path}.{uuid.uuid4().hex}.tmp"
                self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
                self.fs.put_file(str(src), tmp)
                self.fs.mv(tmp, path)
            else:
                self.fs.put_file(str(src), path)

    def write_json(self, path: str, doc: Any) -> None:
        data = json.dumps(doc, sort_keys=True, indent=1).encode("utf-8")
        with _asking(self):
            if self._local:
                tmp = f"{path}.{uuid.uuid4().hex}.tmp"
                self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
                self.fs.pipe_file(tmp, data)
                self.fs.mv(tmp, path)
            else:
                self.fs.pipe_file(path, data)

    def delete(self, path: str) -> None:
        with _asking(self):
            try:
                self.fs.rm_file(path)
            except FileNotFoundError:
                pass

    @property
    def _local(self) -> bool:
        protocol = self.fs.protocol
        return "file" in (protocol if isinstance(protocol, (tuple, list)) else (protocol,))


@contextmanager
def _asking(store: RemoteStore) -> Iterator[None]:
    """Any failure of the remote itself becomes RemoteUnavailable, naming the store."""
    try:
        yield
    except (FileNotFoundError, RemoteUnavailable):
        raise
    except Exception as exc:
        raise RemoteUnavailable(f"the remote cache {store.config.shown()} failed: {_reason(exc)}") from exc


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def _open(config: RemoteConfig) -> tuple[Any, str]:
    """(file system, root path) for the URL; fsspec and its backends load only here."""
    try:
        import fsspec
    except ImportError as exc:
        raise RemoteUnavailable(
            f"a remote cache is configured ({config.shown()}) but fsspec is not installed",
            hint="pip install 'buildsys[remote]' (s3fs for s3://; gcsfs for gs://; adlfs for az://)",
        ) from exc
    protocol = config.url.split("://", 1)[0] if "://" in config.url else "file"
    options = dict(config.options)
    if protocol in ("s3", "s3a"):
        options = _s3_options(options, config.timeout)
    try:
        # no instance cache: a forked doit worker must not reuse its parent's event loop
        fs, root = fsspec.core.url_to_fs(config.url, skip_instance_cache=True, **options)
    except ImportError as exc:
        raise RemoteUnavailable(
            f"the remote cache {config.shown()} needs a package that is not installed: {exc}",
            hint="pip install 'buildsys[remote]' for s3://, gcsfs for gs://, adlfs for az://",
        ) from exc
    except Exception as exc:  # a bad option or URL: said once, the build goes on
        raise RemoteUnavailable(f"the remote cache {config.shown()} cannot be opened: {_reason(exc)}") from exc
    if protocol in ("s3", "s3a"):
        fs.retries = 1  # s3fs's own loop, on top of botocore's, backs off for seconds per call
    return fs, root


def _s3_options(options: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Fail fast: a slow or dead remote must cost seconds, not botocore's minutes of retries."""
    config = dict(options.pop("config_kwargs", {}) or {})
    config.setdefault("connect_timeout", timeout)
    config.setdefault("read_timeout", timeout)
    config.setdefault("retries", {"max_attempts": 2, "mode": "standard"})
    return {"config_kwargs": config, **options}
