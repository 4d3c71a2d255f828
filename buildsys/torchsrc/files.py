"""What a PyTorch file is, told from its bytes (no torch import): the fetch stage's check."""

from __future__ import annotations

import zipfile
from pathlib import Path

from buildsys.errors import InputError

# torch.save's legacy (pre-1.6) format: a pickle (protocol 2) of a magic number
LEGACY_PICKLE = b"\x80\x02\x8a\x0a"
KINDS = {
    "pt2": "an ExportedProgram (torch.export.save)",
    "torchscript": "a TorchScript module (torch.jit.save)",
    "pickle": "a torch.save file (a state_dict or a pickled module)",
}
# the recipe's form -> the kinds of file it takes
FORMS = {"file": ("pt2", "torchscript"), "factory": ("pickle",), "module": ("pickle",)}


def file_kind(path: Path) -> str | None:
    """pt2, torchscript or pickle; None for anything else. A zip is judged by its members,
    as torch itself does: every archive holds one top folder named after the file."""
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head.startswith(LEGACY_PICKLE):
        return "pickle"
    if head != b"PK\x03\x04":
        return None
    names = [n.split("/", 1)[-1] for n in _members(path)]
    if "archive_format" in names or any(n.startswith("models/") for n in names):
        return "pt2"
    if "constants.pkl" in names and any(n.startswith("code/") for n in names):
        return "torchscript"
    return "pickle" if "data.pkl" in names else None


def _members(path: Path) -> list[str]:
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise _corrupt(path, f"damaged zip archive ({exc}); the file may be truncated") from None
    if bad:
        raise _corrupt(path, f"damaged zip member {bad} (its CRC does not match); the file may be truncated")
    return names


def check_file(path: Path, form: str) -> str:
    """The file's kind, refused when damaged or not what the recipe's form takes."""
    kind = file_kind(path)
    if kind is None:
        raise _corrupt(path, "not a PyTorch file (no torch.save, torch.jit.save or torch.export.save archive)")
    if kind not in FORMS[form]:
        wanted = " or ".join(KINDS[k] for k in FORMS[form])
        raise InputError(
            f"{path} is {KINDS[kind]}; source.pytorch.{form} takes {wanted}",
            hint=_form_hint(kind),
            path=str(path),
        )
    return kind


def _form_hint(kind: str) -> str:
    if kind == "pickle":
        return 'name the code that builds the network: `pytorch: {factory: "pkg.module:build", weights: FILE}`'
    return "name it as `pytorch: FILE` (or `pytorch: {file: FILE}`)"


def _corrupt(path: Path, why: str) -> InputError:
    return InputError(
        f"corrupt or wrong model file: {path}: {why}",
        hint="save the model again, or check that the recipe names the right file and format",
        path=str(path),
    )
