"""Build directories buildsys owns, and the record of what it wrote there.

A build claims its recipe's folder before any stage runs: it writes a marker
listing every file the plan may write (kept as a union over builds, so the
outputs of a target since removed from the recipe are still known). `clean`
deletes exactly those files, then the folders they emptied; anything else in
the folder is the user's and stays, with a line saying so.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from buildsys.errors import UsageError
from buildsys.fsutil import atomic_write_text

MARKER = ".buildsys-output.json"


@dataclass
class Cleaned:
    removed: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)


def claim(output: Path, recipe: str, planned: list[Path]) -> None:
    """Record `planned` as ours; refuse a folder holding files buildsys did not write."""
    listed = read_marker(output)
    if listed is None:
        foreign = _foreign(output, planned)
        if foreign:
            shown = ", ".join(str(p.relative_to(output)) for p in foreign[:5])
            more = f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
            raise UsageError(
                f"build directory {output} already holds files buildsys did not write: {shown}{more}",
                hint="buildsys only writes into folders it owns: set `output:` to a new folder, "
                "or move those files away",
                path=str(output),
            )
        listed = set()
    rel = {p.relative_to(output).as_posix() for p in planned if _inside(p, output)}
    if rel <= listed and (output / MARKER).is_file():
        return
    atomic_write_text(output / MARKER, json.dumps({"recipe": recipe, "files": sorted(listed | rel)}, indent=1))


def read_marker(output: Path) -> set[str] | None:
    """The files recorded as written, or None when the folder has no (readable) marker."""
    try:
        data = json.loads((output / MARKER).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        return None
    # a listed path must stay inside the folder, whatever the marker says
    return {f for f in files if not Path(f).is_absolute() and ".." not in Path(f).parts}


def release(output: Path, recipe: str, planned: list[Path]) -> Cleaned | None:
    """Delete what buildsys wrote in `output`; None when it never claimed the folder."""
    listed = read_marker(output)
    if listed is None:
        return None
    listed |= {p.relative_to(output).as_posix() for p in planned if _inside(p, output)}
    done = Cleaned()
    folders: set[Path] = set()
    for rel in sorted(listed):
        path = output / rel
        folders.update(p for p in path.parents if _inside(p, output) and p != output)
        for victim in [path, *_temp_leftovers(path)]:
            if victim.is_file() and not victim.is_symlink():
                victim.unlink()
                done.removed.append(victim)
    (output / MARKER).unlink(missing_ok=True)
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True) + [output]:
        _rmdir_if_empty(folder)
    if output.exists():
        done.kept = sorted(p for p in output.rglob("*") if not p.is_dir())
        # still ours, holding nothing of ours: the next build may use it again
        atomic_write_text(output / MARKER, json.dumps({"recipe": recipe, "files": []}, indent=1))
    return done


def _foreign(output: Path, planned: list[Path]) -> list[Path]:
    """Files in a folder without a marker that no build of this recipe would write.

    Builds from before the marker existed left `<target>/<output name>` files:
    those are adopted, so upgrading buildsys does not orphan a build folder.
    """
    if not output.exists():
        return []
    if not output.is_dir():
        return [output]
    names = {p.name for p in planned}
    found = []
    for path in sorted(output.rglob("*")):
        if path.is_dir() and not path.is_symlink():
            continue
        rel = path.relative_to(output)
        ours = len(rel.parts) == 2 and not path.is_symlink() and (rel.name in names or _is_temp(rel.name, names))
        if not ours:
            found.append(path)
    return found


def _temp_leftovers(path: Path) -> list[Path]:
    # fsutil's atomic writes stage `.<name>.<random>.tmp` beside the file; a kill can leave one
    try:
        return list(path.parent.glob(f".{path.name}.*.tmp"))
    except OSError:
        return []


def _is_temp(name: str, names: set[str]) -> bool:
    return name.startswith(".") and name.endswith(".tmp") and any(name.startswith(f".{n}.") for n in names)


def _rmdir_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass  # not empty (the user's files), or already gone


def _inside(path: Path, folder: Path) -> bool:
    return folder in path.parents and ".." not in path.relative_to(folder).parts


def remove_tree_we_own(path: Path) -> bool:
    """Remove a folder of buildsys state (records): only a real folder, never through a link."""
    if path.is_symlink() or not path.is_dir():
        return False
    shutil.rmtree(path)
    return True
