"""The JSON Schemas shipped in the top-level `schemas/` folder."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path


def schema_path(name: str) -> Path:
    # a source checkout or editable install has the folder beside the package;
    # a wheel carries it as the buildsys.schemas package (see pyproject.toml)
    beside = Path(__file__).resolve().parents[1] / "schemas" / name
    if beside.is_file():
        return beside
    return Path(str(resources.files("buildsys.schemas") / name))


def load_schema(name: str) -> dict:
    return json.loads(schema_path(name).read_text("utf-8"))
