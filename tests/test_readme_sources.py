"""The README's recipe examples for PyTorch, TF1 and Darknet sources load as recipes (the schema and
the loader agree with what the README promises)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from buildsys.recipe import RecipeLoader

ROOT = Path(__file__).resolve().parents[1]


def examples() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Other source formats") : text.index("## ONNX models")]
    return re.findall(r"```yaml\n(.*?)```", section, re.S)


def test_the_readme_has_one_example_per_new_format() -> None:
    found = [next(iter(yaml.safe_load(block)["source"])) for block in examples()]
    assert found == ["pytorch", "tf1", "darknet"]


@pytest.mark.parametrize("index", range(3))
def test_each_example_loads_as_a_recipe(tmp_path: Path, index: int) -> None:
    data = yaml.safe_load(examples()[index])
    data = {"version": 1, "targets": [{"device": "cpu-fp32"}], **data}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(data))
    recipe = RecipeLoader().load(Path("r.yaml"), tmp_path)
    assert recipe.source.format == next(iter(data["source"]))
