"""Where the remote cache is and how a build may use it.

Sources, weakest first: the committed workspace file `buildsys.yaml`, then the
environment (`BUILDSYS_REMOTE`, `BUILDSYS_REMOTE_MODE`; CI sets these per job, e.g.
read-only for pull requests), then `--remote URL`. `BUILDSYS_CACHE_KEY` holds the
HMAC key that signs and checks manifests; it never goes in a file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from buildsys.errors import Problem, RecipeError, UsageError

SETTINGS_FILE = "buildsys.yaml"
MODES = ("read-write", "read-only", "off")
DEFAULT_TIMEOUT = 10.0


@dataclass(frozen=True)
class RemoteConfig:
    url: str
    mode: str = "read-write"
    timeout: float = DEFAULT_TIMEOUT
    options: dict[str, Any] = field(default_factory=dict)
    secret: bytes | None = field(default=None, repr=False)  # the HMAC key

    @property
    def writable(self) -> bool:
        return self.mode == "read-write"

    def shown(self) -> str:
        return self.url


def remote_config(root: Path, cli_url: str | None = None, environ: dict[str, str] | None = None) -> RemoteConfig | None:
    """The remote this build uses, or None (none configured, or mode off)."""
    env = os.environ if environ is None else environ
    config = _from_file(root)
    if "BUILDSYS_REMOTE" in env:
        url = env["BUILDSYS_REMOTE"].strip()
        config = (replace(config, url=url) if config else RemoteConfig(url)) if url else None
    if cli_url:
        config = replace(config, url=cli_url) if config else RemoteConfig(cli_url)
    if config is None:
        return None
    mode = env.get("BUILDSYS_REMOTE_MODE", "").strip()
    if mode:
        if mode not in MODES:
            raise UsageError(
                f"BUILDSYS_REMOTE_MODE is '{mode}'",
                hint=f"set it to one of {', '.join(MODES)} (or unset it for the workspace file's mode)",
            )
        config = replace(config, mode=mode)
    if config.mode == "off":
        return None
    secret = env.get("BUILDSYS_CACHE_KEY", "")
    return replace(config, url=_absolute(config.url, root), secret=secret.encode("utf-8") if secret else None)


def _absolute(url: str, root: Path) -> str:
    """A plain path is relative to the workspace, like every path buildsys reads."""
    if "://" in url:
        return url
    return str((root / os.path.expanduser(url)).resolve())


def _from_file(root: Path) -> RemoteConfig | None:
    path = root / SETTINGS_FILE
    if not path.is_file():
        return None
    data = load_settings(path)
    remote = data.get("remote")
    if not remote:
        return None
    return RemoteConfig(
        url=remote["url"],
        mode=remote.get("mode", "read-write") or "off",  # YAML reads an unquoted `off` as false
        timeout=float(remote.get("timeout", DEFAULT_TIMEOUT)),
        options=dict(remote.get("options", {})),
    )


def load_settings(path: Path) -> dict[str, Any]:
    """The workspace file, schema-checked; problems are located like a recipe's."""
    import jsonschema

    from buildsys.documents.files import parse_file
    from buildsys.documents.problems import schema_problems
    from buildsys.schemafiles import load_schema

    parsed = parse_file(path, SETTINGS_FILE)
    problems = list(parsed.problems)
    if not problems and not isinstance(parsed.data, dict):
        problems.append(Problem(SETTINGS_FILE, None, None, "", "not a mapping of settings"))
    if not problems:
        validator = jsonschema.Draft202012Validator(load_schema("workspace.schema.json"))
        problems = schema_problems(validator, parsed)
    if problems:
        error = RecipeError(problems)
        error.hint = f"fix the keys listed above; {SETTINGS_FILE} is described in README.md (Shared cache)"
        raise error
    return parsed.data
