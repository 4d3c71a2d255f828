"""PyTorch sources end to end: .pt2, TorchScript and factory + state_dict, exported to ONNX by the
export stage and validated against the PyTorch model itself (fp32 at 1e-4, int8 by cosine)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import build_json, run_cli, source_recipe
from torchnets import CODE

torch = pytest.importorskip("torch")

SHAPE = [1, 3, 64, 64]
FORMS = {
    "pt2": "pytorch: {name}.pt2",
    "ts": "pytorch: {{file: {name}.ts.pt}}",
    "sd": 'pytorch: {{factory: "nets:build", kwargs: {{name: {name}}}, weights: {name}.pth}}',
}
SHAPES = f"shapes: {{image: {SHAPE}}}\n"


def recipe(name: str, source: str, shapes: bool = True) -> str:
    return source_recipe(name, f"  {source}", "image", SHAPES if shapes else "")


def load_nets(folder: Path):
    spec = importlib.util.spec_from_file_location("nets_under_test", folder / "nets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def save_forms(folder: Path, name: str) -> None:
    net = load_nets(folder).build(name)
    example = (torch.randn(*SHAPE),)
    torch.export.save(torch.export.export(net, example), folder / f"{name}.pt2")
    torch.jit.save(torch.jit.trace(net, example), folder / f"{name}.ts.pt")
    torch.save(net.state_dict(), folder / f"{name}.pth")


def torch_workspace(ws: Path, nets=("cnn", "detector"), forms=tuple(FORMS)) -> Path:
    root = ws / "recipes"
    root.mkdir(parents=True)
    (root / "nets.py").write_text(CODE)
    np.save(root / "calib.npy", np.random.default_rng(0).standard_normal((16, *SHAPE[1:]), dtype=np.float32))
    for name in nets:
        save_forms(root, name)
        for form in forms:
            source = FORMS[form].format(name=name)
            (root / f"{name}-{form}.yaml").write_text(recipe(f"{name}-{form}", source))
    return ws


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    ws = torch_workspace(tmp_path_factory.mktemp("torch") / "ws")
    outcomes = build_json(ws, "-j", "2")
    assert outcomes, outcomes
    return ws


@pytest.mark.parametrize("name", ["cnn", "detector"])
@pytest.mark.parametrize("form", list(FORMS))
def test_each_form_builds_fp32_and_int8_against_pytorch(built: Path, name: str, form: str) -> None:
    out = built / "build" / f"{name}-{form}"
    fp32 = json.loads((out / "fp32/metrics.json").read_text())
    int8 = json.loads((out / "cpu-int8/metrics.json").read_text())
    assert fp32["passed"] and int8["passed"], (fp32, int8)
    for output, m in fp32["outputs"].items():
        print(
            f"pytorch {name}-{form} {output} fp32 max_abs_error={m['max_abs_error']:.2e} int8 cosine={int8['outputs'][output]['cosine']:.5f}"
        )
        assert m["max_abs_error"] <= 1e-4, (output, m)
    export = json.loads((out / "_common/export.json").read_text())
    assert export["exporter"] in ("dynamo", "torchscript")
    lock = (built / "recipes" / f"{name}-{form}.lock").read_text()
    assert f"exporter: {export['exporter']}" in lock and "torch:" in lock


def test_validation_runs_the_pytorch_model_not_the_export(built: Path) -> None:
    """The reference is the PyTorch model: a validate key holds the torch version and the source files."""
    import yaml

    lock = yaml.safe_load((built / "recipes/cnn-sd.lock").read_text())
    validate = lock["stages"]["fp32/validate"]
    assert validate["tools"]["torch"] == torch.__version__
    assert {"cnn.pth", "nets.py"} <= set(validate["inputs"]), validate["inputs"]
    assert "prepared.onnx" not in str(validate["inputs"])
    assert lock["stages"]["export"]["facts"]["exporter"] in ("dynamo", "torchscript")


def small_workspace(tmp_path: Path, source: str, shapes: bool = True) -> Path:
    ws = torch_workspace(tmp_path / "ws", nets=("cnn",), forms=())
    (ws / "recipes/net.yaml").write_text(recipe("net", source, shapes))
    return ws


def nothing_cached(ws: Path) -> bool:
    """No stage that read the model left a result (calibration reads only the data and may run)."""
    made = [ws / "build/net/_common" / f for f in ("source.json", "exported.onnx", "prepared.onnx")]
    records = [ws / ".buildsys/records/net" / f for f in ("fetch.json", "export.json", "prepare.json")]
    return not any(p.exists() for p in made + records)


@pytest.mark.parametrize("file", ["cnn.pt2", "cnn.ts.pt", "cnn.pth"])
@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_damaged_pytorch_files_are_refused_by_fetch(tmp_path: Path, file: str, damage: str) -> None:
    source = (
        f"pytorch: {file}"
        if file != "cnn.pth"
        else 'pytorch: {factory: "nets:build", kwargs: {name: cnn}, weights: cnn.pth}'
    )
    ws = small_workspace(tmp_path, source)
    path = ws / "recipes" / file
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3] if damage == "truncated" else b"\x00garbage" + data[8:])
    proc = run_cli(ws, "build", check=2)
    assert file in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert "corrupt or wrong model file" in proc.stderr
    assert nothing_cached(ws)


def test_a_state_dict_named_as_a_file_says_to_name_the_factory(tmp_path: Path) -> None:
    ws = small_workspace(tmp_path, "pytorch: cnn.pth")
    proc = run_cli(ws, "build", check=2)
    assert "cnn.pth" in proc.stderr and "factory" in proc.stderr and "Traceback" not in proc.stderr


def test_weights_of_another_network_are_named_key_by_key(tmp_path: Path) -> None:
    ws = small_workspace(
        tmp_path, 'pytorch: {factory: "nets:build", kwargs: {name: cnn, classes: 7}, weights: cnn.pth}'
    )
    proc = run_cli(ws, "build", check=2)
    assert "does not fit the network" in proc.stderr and "head.weight" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_torchscript_without_shapes_names_the_inputs_to_shape(tmp_path: Path) -> None:
    ws = small_workspace(tmp_path, "pytorch: cnn.ts.pt", shapes=False)
    proc = run_cli(ws, "build", check=2)
    assert "no shape for image" in proc.stderr and "shapes: {image: [1, 3, 224, 224]}" in proc.stderr, proc.stderr


def test_weights_are_never_unpickled_beyond_tensors(tmp_path: Path) -> None:
    """A `weights:` file is read with weights_only=True: a pickle that would run code is refused, unrun."""
    ws = small_workspace(tmp_path, 'pytorch: {factory: "nets:build", kwargs: {name: cnn}, weights: evil.pth}')
    marker = tmp_path / "ran"
    torch.save({"x": Payload(marker)}, ws / "recipes/evil.pth")
    proc = run_cli(ws, "build", check=2)
    assert "evil.pth" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not marker.exists()


class Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_without_torch_the_error_says_to_install_it(tmp_path: Path) -> None:
    import subprocess

    ws = small_workspace(tmp_path, "pytorch: cnn.pt2")
    probe = "import sys\nsys.modules['torch'] = None\nfrom buildsys.cli import main\nsys.exit(main(['build']))\n"
    proc = subprocess.run([sys.executable, "-c", probe], cwd=ws, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, proc.stderr
    assert "pip install torch" in proc.stderr and "Traceback" not in proc.stderr


def test_inspect_shows_the_onnx_export_of_a_pt2_file_and_a_recipe(tmp_path: Path) -> None:
    ws = small_workspace(tmp_path, "pytorch: cnn.ts.pt")
    proc = run_cli(ws, "inspect", "recipes/cnn.pt2")
    assert "exported to ONNX by the dynamo exporter" in proc.stdout and "Conv" in proc.stdout, proc.stdout
    assert "image" in proc.stdout and "[1, 3, 64, 64]" in proc.stdout
    data = json.loads(run_cli(ws, "inspect", "--json", "recipes/net.yaml").stdout)
    assert "torchscript exporter" in json.dumps(data) and data["inputs"][0]["name"] == "image"
    proc = run_cli(ws, "inspect", "recipes/cnn.ts.pt", check=2)
    assert "no shape for image" in proc.stderr and "Traceback" not in proc.stderr


def test_a_pickled_module_builds_and_editing_the_code_rebuilds_the_export(tmp_path: Path) -> None:
    ws = small_workspace(tmp_path, "pytorch: {module: whole.pth}")
    root = ws / "recipes"
    sys.path.insert(0, str(root))
    try:  # pickled under the name the build imports it by: `nets`, from the recipe's folder
        import nets

        torch.save(nets.build("cnn"), root / "whole.pth")
    finally:
        sys.path.remove(str(root))
        sys.modules.pop("nets", None)
    outcomes = build_json(ws)
    assert outcomes["export"] == "ran" and outcomes["fp32/validate"] == "ran"
    fp32 = json.loads((ws / "build/net/fp32/metrics.json").read_text())
    assert fp32["outputs"]["output"]["max_abs_error"] <= 1e-4
    (root / "nets.py").write_text(CODE + "\n# a comment changes the code's digest\n")
    assert build_json(ws)["export"] == "ran"


def test_a_missing_file_in_the_short_form_names_its_line(tmp_path: Path) -> None:
    ws = small_workspace(tmp_path, "pytorch: gone.pt2")
    err = run_cli(ws, "build", check=2).stderr
    assert "net.yaml:4: source.pytorch: source model not found" in err and "gone.pt2" in err, err
