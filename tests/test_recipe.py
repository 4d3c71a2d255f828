"""Recipe loading: the public format, defaults, digests and located problems."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from buildsys.errors import Problem, RecipeError, UsageError
from buildsys.recipe import RecipeLoader, discover
from buildsys.schemafiles import schema_path

SCHEMA_PATH = schema_path("recipe.schema.json")

DATA = Path(__file__).parent / "data" / "recipes"

FULL = """\
version: 1
name: shapes-classifier
source:
  onnx: ../examples/shapes/model.onnx
  sha256: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
shapes: {input_1: [1, 64, 64, 3]}
batch: 2
calibration:
  samples: 32
  seed: 7
  inputs:
    input_1:
      images: ../examples/shapes/calib/*.png
      resize: [64, 48]
      color: bgr
      scale: 0.00392156862745098
      mean: [0.5, 0.25, 0.125]
      std: [2, 3, 4]
replacements: [{match: {op_type: Resize}, attributes: {mode: nearest}}]
targets:
  - device: cpu-int8
  - device: cpu-fp32
    name: fp32
validate:
  samples: 8
  seed: 3
  thresholds: {min_cosine: 0.99, max_abs_error: 0.5, max_mean_abs_error: 0.1}
  inputs:
    input_1: {npz: val/data.npz, key: x}
output: ../out/shapes
"""

MINIMAL = """\
version: 1
source: {onnx: model.onnx}
targets:
  - device: cpu-int8
"""


@pytest.fixture(scope="module")
def loader() -> RecipeLoader:
    return RecipeLoader()


def write(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems_of(loader: RecipeLoader, path: Path, workspace: Path) -> list[Problem]:
    with pytest.raises(RecipeError) as info:
        loader.load(path, workspace)
    return info.value.problems


def lines_and_keys(problems: list[Problem]) -> list[tuple[int | None, str]]:
    return [(p.line, p.key) for p in problems]


# --- the schema itself ---------------------------------------------------------------


def test_schema_is_valid_draft_2020_12():
    Draft202012Validator.check_schema(json.loads(SCHEMA_PATH.read_text()))


def test_schema_describes_every_property_and_closes_every_object():
    def walk(node, where):
        if isinstance(node, list):
            for item in node:
                walk(item, where)
        if not isinstance(node, dict):
            return
        # attribute and input values are keyed by the model's own names
        open_maps = ("/$defs/replacement/properties/attributes", "/$defs/replacement/properties/inputs")
        if node.get("type") == "object" and where not in open_maps:
            assert node.get("additionalProperties", True) is not True, where
        for name, sub in node.get("properties", {}).items():
            assert "description" in sub, f"{where}/properties/{name}"
        for key, sub in node.items():
            walk(sub, f"{where}/{key}")

    walk(json.loads(SCHEMA_PATH.read_text()), "")


# --- good recipes ----------------------------------------------------------------------


def test_full_recipe_loads_with_every_key(loader, tmp_path):
    path = write(tmp_path, "recipes/full.yaml", FULL)
    r = loader.load(path, tmp_path)
    assert r.path == path and r.name == "shapes-classifier"
    assert r.source.format == "onnx"
    assert r.source.path == tmp_path / "examples/shapes/model.onnx"
    assert r.source.written == "../examples/shapes/model.onnx"
    assert r.source.sha256.startswith("0123")
    assert r.shapes == {"input_1": (1, 64, 64, 3)} and r.batch == 2
    cal = r.calibration
    assert (cal.samples, cal.seed) == (32, 7)
    image = cal.inputs["input_1"]
    assert image.kind == "images" and image.pattern == str(tmp_path / "examples/shapes/calib/*.png")
    assert image.written == "../examples/shapes/calib/*.png"
    assert (image.resize, image.color, image.scale) == ((64, 48), "bgr", 0.00392156862745098)
    assert image.mean == (0.5, 0.25, 0.125) and image.std == (2.0, 3.0, 4.0)
    (edit,) = r.replacements
    assert edit.data == {"match": {"op_type": "Resize"}, "attributes": {"mode": "nearest"}}
    assert (edit.selector, edit.action, edit.index) == ("match", "attributes", 0)
    assert edit.line == 19 and edit.line_of("attributes", "mode") == 19  # line in the recipe text
    assert [(t.device, t.name) for t in r.targets] == [("cpu-int8", "cpu-int8"), ("cpu-fp32", "fp32")]
    v = r.validate
    assert (v.samples, v.seed) == (8, 3)
    assert v.thresholds == {"min_cosine": 0.99, "max_abs_error": 0.5, "max_mean_abs_error": 0.1}
    npz = v.inputs["input_1"]
    assert (npz.kind, npz.key, npz.pattern) == ("npz", "x", str(tmp_path / "recipes/val/data.npz"))
    assert r.output == tmp_path / "out/shapes"


def test_defaults(loader, tmp_path):
    text = MINIMAL + "calibration:\n  inputs:\n    a: {images: '*.png'}\n    b: {npz: d.npz}\n    c: {npy: d.npy}\n"
    r = loader.load(write(tmp_path, "recipes/tiny-model.yml", text), tmp_path)
    assert r.name == "tiny-model"
    assert r.output == tmp_path / "build" / "tiny-model"
    assert r.source.path == tmp_path / "recipes" / "model.onnx" and r.source.sha256 is None
    assert r.targets[0].name == "cpu-int8"
    assert r.shapes == {} and r.batch is None and r.replacements == ()
    assert (r.validate.samples, r.validate.seed, r.validate.thresholds, r.validate.inputs) == (16, 1, {}, None)
    cal = r.calibration
    assert (cal.samples, cal.seed) == (64, 0)
    image = cal.inputs["a"]
    assert (image.resize, image.color, image.scale, image.mean, image.std) == (None, "rgb", 1.0, (0.0,), (1.0,))
    assert cal.inputs["b"].key == "b" and cal.inputs["c"].key is None


def test_no_calibration_section(loader, tmp_path):
    assert loader.load(write(tmp_path, "r.yaml", MINIMAL), tmp_path).calibration is None


def test_single_mean_and_std_stay_one_tuples(loader, tmp_path):
    text = MINIMAL + "calibration:\n  inputs:\n    x: {images: a/*.png, color: gray, mean: [127.5], std: [127.5]}\n"
    image = loader.load(write(tmp_path, "r.yaml", text), tmp_path).calibration.inputs["x"]
    assert (image.mean, image.std) == ((127.5,), (127.5,))


def test_anchors_and_aliases_are_allowed(loader, tmp_path):
    text = MINIMAL + "calibration:\n  inputs:\n    x: &data {npy: a.npy}\nvalidate:\n  inputs:\n    x: *data\n"
    r = loader.load(write(tmp_path, "r.yaml", text), tmp_path)
    assert r.validate.inputs == r.calibration.inputs


# --- digest ----------------------------------------------------------------------------


def test_digest_ignores_comments_order_and_style(loader, tmp_path):
    block = MINIMAL + "calibration:\n  samples: 8\n  seed: 0\n  inputs:\n    x: {npy: a.npy}\n"
    restyled = """\
        # the same recipe, written differently
        targets: [{device: "cpu-int8"}]   # flow style
        calibration: {inputs: {x: {'npy': a.npy}}, seed: 0, samples: 8}
        source:
          onnx: model.onnx
        version: 1
    """
    first = loader.load(write(tmp_path, "a/r.yaml", block), tmp_path).digest
    assert loader.load(write(tmp_path, "b/r.yaml", restyled), tmp_path).digest == first
    changed = block.replace("seed: 0", "seed: 1")
    assert loader.load(write(tmp_path, "c/r.yaml", changed), tmp_path).digest != first


# --- problems --------------------------------------------------------------------------


def test_many_mistakes_reported_at_once(loader):
    problems = problems_of(loader, DATA / "mistakes.yaml", DATA.parent.parent.parent)
    assert lines_and_keys(problems) == [
        (5, "source"),
        (6, "calibraton"),
        (11, "validate.samples"),
        (13, "validate.seed"),
        (17, "validate.inputs.input_1.color"),
        (20, "targets[1].device"),
    ]
    by_key = {p.key: p for p in problems}
    assert by_key["calibraton"].hint == "did you mean 'calibration'?"
    assert by_key["calibraton"].column == 1
    assert by_key["source"].message.endswith("found: keras, onnx")
    assert "-3" in by_key["validate.samples"].message
    assert "'purple'" in by_key["validate.inputs.input_1.color"].message
    assert "duplicate" in by_key["validate.seed"].message
    assert "device" in by_key["targets[1].device"].message
    assert all(p.file == "tests/data/recipes/mistakes.yaml" for p in problems)


def test_syntax_error_has_a_line(loader, tmp_path):
    path = write(tmp_path, "r.yaml", "version: 1\nsource:\n  onnx: a\n   keras: b\n")
    [problem] = problems_of(loader, path, tmp_path)
    assert problem.line == 4 and problem.message.startswith("YAML syntax error")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "empty"),
        ("# only a comment\n", "empty"),
        ("- version: 1\n", "mapping"),
        ("just text\n", "mapping"),
        ("null\n", "mapping"),
        ("---\nversion: 1\n---\nversion: 1\n", "single document"),
        ("Name: cat\nUmask: 0022\nState: R\nTgid: 1\nPid: 1\n", "not a recipe: none of its keys (Name, Umask,"),
    ],
)
def test_not_a_recipe(loader, tmp_path, text, words):
    [problem] = problems_of(loader, write(tmp_path, "r.yaml", text), tmp_path)
    assert words in problem.message and problem.file == "r.yaml"


def test_not_utf8(loader, tmp_path):
    path = tmp_path / "r.yaml"
    path.write_bytes(b"version: 1\nname: caf\xe9\n")
    [problem] = problems_of(loader, path, tmp_path)
    assert problem.line == 2 and "UTF-8" in problem.message


def test_unreadable(loader, tmp_path):
    (tmp_path / "dir.yaml").mkdir()
    [problem] = problems_of(loader, tmp_path / "dir.yaml", tmp_path)
    assert "cannot read" in problem.message


def test_duplicate_target_names(loader, tmp_path):
    text = "version: 1\nsource: {onnx: m.onnx}\ntargets:\n  - device: cpu-int8\n  - device: tpu\n    name: cpu-int8\n"
    [problem] = problems_of(loader, write(tmp_path, "r.yaml", text), tmp_path)
    assert (problem.line, problem.key) == (6, "targets[1].name")
    assert "line 4" in problem.message


def test_unknown_key_inside_an_input(loader, tmp_path):
    text = MINIMAL + "calibration:\n  inputs:\n    image:\n      images: a/*.png\n      sacle: 0.5\n"
    [problem] = problems_of(loader, write(tmp_path, "r.yaml", text), tmp_path)
    assert (problem.line, problem.column, problem.key) == (9, 7, "calibration.inputs.image.sacle")
    assert problem.hint == "did you mean 'scale'?"


def test_key_is_only_allowed_with_npz(loader, tmp_path):
    text = MINIMAL + "calibration:\n  inputs:\n    image: {images: a/*.png, key: x}\n"
    [problem] = problems_of(loader, write(tmp_path, "r.yaml", text), tmp_path)
    assert (problem.line, problem.key) == (7, "calibration.inputs.image.key")
    assert "npz" in problem.message


def test_input_source_needs_exactly_one_kind(loader, tmp_path):
    text = MINIMAL + "calibration:\n  inputs:\n    a: {images: a/*.png, npy: a.npy}\n    b: {}\n"
    problems = problems_of(loader, write(tmp_path, "r.yaml", text), tmp_path)
    assert [p.message.split("; ")[1] for p in problems] == ["found: images, npy", "found: none"]
    assert [p.line for p in problems] == [7, 8]


def test_gray_needs_one_channel_value(loader, tmp_path):
    text = MINIMAL + "calibration:\n  inputs:\n    x: {images: a/*.png, color: gray, mean: [1, 2, 3], std: [1, 2]}\n"
    problems = problems_of(loader, write(tmp_path, "r.yaml", text), tmp_path)
    assert [p.key for p in problems] == ["calibration.inputs.x.mean", "calibration.inputs.x.std"]


def test_rgb_takes_one_or_three_channel_values(loader, tmp_path):
    text = MINIMAL + "calibration:\n  inputs:\n    x: {images: a/*.png, mean: [1, 2], std: [1, 2, 3, 4]}\n"
    problems = problems_of(loader, write(tmp_path, "r.yaml", text), tmp_path)
    assert [(p.key, p.message) for p in problems] == [
        ("calibration.inputs.x.mean", "needs 1 or 3 values for rgb images, got 2"),
        ("calibration.inputs.x.std", "needs 1 to 3 values, got 4"),
    ]


def test_bad_values_are_shown_briefly(loader, tmp_path):
    text = MINIMAL.replace("cpu-int8", "CPU " + "x" * 200) + "shapes: {a: [1, 0]}\nbatch: yes\n"
    problems = problems_of(loader, write(tmp_path, "r.yaml", text), tmp_path)
    assert [p.key for p in problems] == ["targets[0].device", "shapes.a[1]", "batch"]
    assert all(len(p.message) < 120 for p in problems)
    assert problems[2].message == "must be an integer, got true"


def test_paths_no_file_system_takes_are_problems(loader, tmp_path):
    """A NUL or an over-long name would fail every later stat (ENAMETOOLONG), far from the recipe line."""
    text = (
        'version: 1\nsource: {keras: "m\\0.keras"}\n'
        f"output: {'x/' * 2100}\n"
        f"targets:\n  - device: {'p' * 300}\n  - {{device: cpu-int8, name: {'n' * 256}}}\n"
        "replacements:\n  - {match: {name: 'x{99999999999}'}, attributes: {x: 1}}\n"
        f"  - {{match: {{name: '{'(' * 3000 + ')' * 3000}'}}, attributes: {{x: 1}}}}\n"
    )
    problems = problems_of(loader, write(tmp_path, "r.yaml", text), tmp_path)
    found = {p.key: (p.line, p.message) for p in problems}
    assert found["source.keras"] == (2, "contains a NUL character, which no path can hold")
    assert found["output"] == (3, "is 4200 bytes long; paths are limited to 4096")
    assert found["targets[0].device"][0] == 5 and "name of 300 bytes" in found["targets[0].device"][1]
    assert found["targets[1].name"][0] == 6 and "limited to 255" in found["targets[1].name"][1]
    assert "repetition number is too large" in found["replacements[0].match.name"][1]
    assert "nested too deeply" in found["replacements[1].match.name"][1]
    assert all(len(p.message) < 120 for p in problems)


def test_yaml_only_values_are_problems(loader, tmp_path):
    text = MINIMAL + "name: 2024-01-01\n1: x\nbatch: .inf\n<<: {a: 1}\n"
    problems = problems_of(loader, write(tmp_path, "r.yaml", text), tmp_path)
    assert [p.line for p in problems] == [5, 6, 7, 8]
    assert "timestamp" in problems[0].message and problems[0].hint.startswith("quote")
    assert "keys must be text" in problems[1].message
    assert "finite" in problems[2].message and "merge" in problems[3].message


def test_explicit_tags_the_text_does_not_fit_are_problems(loader, tmp_path):
    text = MINIMAL + "name: !!float ''\nbatch: !!bool maybe\noutput: !!int 'abc'\n"
    problems = problems_of(loader, write(tmp_path, "r.yaml", text), tmp_path)
    assert [(p.line, p.message) for p in problems] == [
        (5, "'' is not a valid !!float"),
        (6, "'maybe' is not a valid !!bool"),
        (7, "'abc' is not a valid !!int"),
    ]


def test_alias_bombs_stop_early(loader, tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, 10)]
    problems = problems_of(loader, write(tmp_path, "r.yaml", "\n".join(lines) + "\n"), tmp_path)
    assert sum("too large" in p.message for p in problems) == 1


def test_wrong_version_and_missing_keys(loader, tmp_path):
    problems = problems_of(loader, write(tmp_path, "r.yaml", "version: 2\n"), tmp_path)
    assert [(p.key, p.message) for p in problems] == [
        ("source", "missing required key 'source'"),
        ("targets", "missing required key 'targets'"),
        ("version", "must be 1, got 2"),
    ]


def test_file_name_must_make_a_valid_default_name(loader, tmp_path):
    [problem] = problems_of(loader, write(tmp_path, "my recipe.yaml", MINIMAL), tmp_path)
    assert problem.key == "name" and "my recipe" in problem.message


def test_file_outside_the_workspace_is_shown_absolute(loader, tmp_path):
    path = write(tmp_path, "elsewhere/r.yaml", "version: 2\n" + MINIMAL.split("\n", 1)[1])
    [problem] = problems_of(loader, path, tmp_path / "ws")
    assert problem.file == str(path)


# --- load_all --------------------------------------------------------------------------


def test_load_all_reports_every_file(loader, tmp_path):
    a = write(tmp_path, "recipes/a.yaml", MINIMAL.replace("onnx:", "onx:"))
    b = write(tmp_path, "recipes/b.yaml", MINIMAL + "batch: 0\n")
    c = write(tmp_path, "recipes/c.yaml", MINIMAL)
    with pytest.raises(RecipeError) as info:
        loader.load_all([a, b, c], tmp_path)
    problems = info.value.problems
    assert [(p.file, p.key) for p in problems] == [
        ("recipes/a.yaml", "source"),
        ("recipes/a.yaml", "source.onx"),
        ("recipes/b.yaml", "batch"),
    ]


def test_load_all_rejects_duplicate_names_and_outputs(loader, tmp_path):
    a = write(tmp_path, "one/m.yaml", MINIMAL)
    b = write(tmp_path, "two/m.yaml", MINIMAL)
    c = write(tmp_path, "two/other.yaml", MINIMAL + "output: ../build/m\n")
    with pytest.raises(RecipeError) as info:
        loader.load_all([a, b, c], tmp_path)
    [name, output] = info.value.problems
    assert name.file == "two/m.yaml" and "one/m.yaml" in name.message
    assert (output.file, output.key, output.line) == ("two/other.yaml", "output", 5)


def test_load_all_returns_recipes_in_order(loader, tmp_path):
    paths = [write(tmp_path, f"{n}.yaml", MINIMAL) for n in ("b", "a")]
    assert [r.name for r in loader.load_all(paths, tmp_path)] == ["b", "a"]


# --- discover --------------------------------------------------------------------------


def test_discover_file_and_directory(tmp_path):
    for name in ("b.yaml", "a.yml", "notes.txt", ".hidden.yaml", "sub/c.yaml"):
        write(tmp_path, f"rs/{name}", MINIMAL)
    found = discover([Path("rs"), tmp_path / "rs" / "sub" / "c.yaml", Path("rs/./b.yaml")], tmp_path)
    assert found == [tmp_path / "rs/a.yml", tmp_path / "rs/b.yaml", tmp_path / "rs/sub/c.yaml"]


def test_discover_default_directory(tmp_path):
    write(tmp_path, "recipes/x.yaml", MINIMAL)
    assert discover([], tmp_path) == [tmp_path / "recipes/x.yaml"]


@pytest.mark.parametrize("given", [["missing.yaml"], ["empty"], []])
def test_discover_names_the_bad_path(tmp_path, given):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError) as info:
        discover([Path(g) for g in given], tmp_path)
    assert not isinstance(info.value, RecipeError)
    assert str(tmp_path / (given[0] if given else "recipes")) in info.value.message
