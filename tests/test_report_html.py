"""report.html per target, build/index.html and `buildsys report`.

One workspace is built once for the module: the ONNX shapes example for an int8
CPU target (per-layer error), an ARTPEC-9 target (two ops fall back to the CPU),
an ONNX-format target (not validated), and a second recipe whose threshold
cannot be met (a failed target). A second, identical workspace checks that
reports are byte-identical across two clean builds.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import EXAMPLE, run_cli

RECIPE_HEAD = """\
version: 1
name: {name}
source:
  onnx: model.onnx
shapes: {{image: [1, 3, 64, 64]}}
calibration:
  samples: 12
  inputs:
    image: {{images: calib/*.png, scale: 0.00392156862745098}}
validate:
  samples: 4
"""
RECIPE = (
    '# shapes CNN <script>alert("x")</script> & friends: the comment must come out escaped\n'
    + RECIPE_HEAD.format(name="net")
    + "  task: classification\ntargets:\n  - device: cpu-int8\n  - device: axis-artpec9\n  - device: axis-cv25\n"
)
STRICT = RECIPE_HEAD.format(name="strict") + "  thresholds: {max_abs_error: 0.000001}\ntargets:\n  - device: cpu-int8\n"
TARGETS = ("cpu-int8", "axis-artpec9", "axis-cv25")
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
SCREENSHOT = Path("/tmp/report_screenshot.png")
# the only bytes allowed to differ between two builds of the same inputs: measured seconds
SECONDS = re.compile(r'(<td class="num seconds">)[^<]*(</td>)')


def make(ws: Path) -> Path:
    root = ws / "recipes"
    (root / "calib").mkdir(parents=True)
    shutil.copy(EXAMPLE / "model.onnx", root / "model.onnx")
    for png in sorted((EXAMPLE / "calib").glob("*.png"))[:16]:
        shutil.copy(png, root / "calib" / png.name)
    (root / "net.yaml").write_text(RECIPE)
    (root / "strict.yaml").write_text(STRICT)
    return ws


def build(ws: Path) -> subprocess.CompletedProcess:
    # exit 1: strict/cpu-int8 misses its threshold; everything else builds
    return run_cli(make(ws), "build", check=1)


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("reports")
    build(root)
    return root


def page(ws: Path, target: str, recipe: str = "net") -> str:
    return (ws / "build" / recipe / target / "report.html").read_text("utf-8")


def test_report_html_beside_report_md_with_tables_and_inline_plots(ws: Path) -> None:
    for target in TARGETS:
        assert (ws / "build/net" / target / "report.md").is_file()
    int8 = page(ws, "cpu-int8")
    assert '<table id="metrics"' in int8 and "<th>output</th>" in int8
    # error histogram, worst-layer chart, op split: three inline SVG figures with unique ids
    assert int8.count("<svg ") == 3
    assert 'aria-label="error histogram of output scores"' in int8
    assert 'aria-label="relative RMSE of the worst quantized layers"' in int8
    ids = re.findall(r'\bid="([^"]+)"', int8)
    assert len(ids) == len(set(ids))
    assert '<table id="layers"' in int8 and "CONV_2D" in int8
    a9 = page(ws, "axis-artpec9")
    unsupported = a9[a9.index('<table id="unsupported"') :].split("</table>")[0]
    assert "REDUCE_MAX" in unsupported and "SOFTMAX" in unsupported and "operator list" in unsupported
    assert "2 on the CPU" in a9
    cv25 = page(ws, "axis-cv25")
    assert "not validated" in cv25 and '<table id="metrics"' not in cv25 and "Next steps" in cv25


def test_report_html_is_self_contained_and_escaped(ws: Path) -> None:
    for target in TARGETS:
        text = page(ws, target)
        lower = text.lower()
        for tag in ("<script", "<link", "<img", "<iframe", "<object", "<embed", "@import", " src="):
            assert tag not in lower, (target, tag)
        assert re.findall(r"url\((?!#)", text) == [], target  # only references inside the page
        for href in re.findall(r'href="([^"]*)"', text):
            assert href.startswith("#") or not re.match(r"[a-z][a-z0-9+.-]*:", href), (target, href)
        # the recipe text appears verbatim, escaped
        assert "# shapes CNN &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; friends" in text
        assert "recipe digest" in text
        # markup the page makes itself is never shown as text
        outside_recipe = re.sub(r'<pre id="recipe-text">.*?</pre>', "", text, flags=re.S)
        for tag in ("code", "div", "span", "ul", "li", "a ", "p"):
            assert f"&lt;{tag}" not in outside_recipe, (target, tag)


def test_report_html_links_resolve_and_recipe_digest_matches_lock(ws: Path) -> None:
    report = ws / "build/net/cpu-int8/report.html"
    text = report.read_text("utf-8")
    for href in re.findall(r'href="([^"#][^"]*)"', text):
        assert (report.parent / href).resolve().is_file(), href
    lock = (ws / "recipes/net.lock").read_text("utf-8")
    digest = re.search(r"recipe_digest: ([0-9a-f]{64})", lock).group(1)
    assert f"<code>{digest}</code>" in text
    # every stage row's key starts a stage key of the lock
    table = text[text.index('id="timings"') :]
    keys = re.findall(r"<code>([0-9a-f]{16})</code>", table[: table.index("</table>")])
    locked = set(re.findall(r"\bkey: ([0-9a-f]{64})", lock))
    assert len(keys) >= 6 and all(any(k.startswith(short) for k in locked) for short in keys)


def test_reports_are_byte_identical_across_clean_builds(ws: Path, tmp_path: Path) -> None:
    other = tmp_path / "again"
    build(other)
    for target in TARGETS:
        a, b = page(ws, target), page(other, target)
        timed = len(SECONDS.findall(a))
        assert timed >= 4  # fetch, prepare, quantize, check at least: the mask hides only those cells
        assert SECONDS.sub(r"\1\2", a) == SECONDS.sub(r"\1\2", b), target
    assert (ws / "build/index.html").read_bytes() == (other / "build/index.html").read_bytes()


def test_index_links_every_target_with_status(ws: Path) -> None:
    index = ws / "build" / "index.html"
    text = index.read_text("utf-8")
    rows = {m.group(1): m.group(0) for m in re.finditer(r"<tr><td>(\w+</td><td>[\w-]+)</td>.*?</tr>", text, re.S)}
    assert set(rows) == {f"net</td><td>{t}" for t in TARGETS} | {"strict</td><td>cpu-int8"}
    for target in TARGETS:
        row = rows[f"net</td><td>{target}"]
        href = re.search(r'href="([^"]+)"', row).group(1)
        assert (index.parent / href).resolve() == (ws / "build/net" / target / "report.html").resolve()
        assert 'class="badge ok"' in row
    strict = rows["strict</td><td>cpu-int8"]
    # a failed target has this build's report, which says what failed
    assert 'class="badge failed"' in strict and "max_abs_error" in strict
    assert 'href="strict/cpu-int8/report.html"' in strict and "earlier build" not in strict
    assert "not validated" in rows["net</td><td>axis-cv25"]
    # the lockfiles the build pinned, by digest: net's is written, strict failed before its first
    locks = text[text.index('<table id="locks"') :].split("</table>")[0]
    digest = hashlib.sha256((ws / "recipes/net.lock").read_bytes()).hexdigest()
    assert f"<code>recipes/net.lock</code></td><td><code>{digest}</code>" in locks
    assert "<code>recipes/strict.lock</code></td><td>not written" in locks
    assert "6/8 on accelerator" in rows["net</td><td>axis-artpec9"]


def test_report_command_lists_reports_and_opens_the_index(ws: Path, tmp_path: Path) -> None:
    out = run_cli(ws, "report").stdout
    for target in TARGETS:
        assert re.search(rf"ok\s+net/{target}\s+build/net/{target}/report\.html", out), out
    assert re.search(r"failed\s+strict/cpu-int8\s+build/strict/cpu-int8/report\.html", out), out
    assert re.search(r"report\.html\n\s+cpu-int8/validate: validation thresholds missed\n\s+\w+: max_abs_error", out), (
        out
    )
    assert "index: build/index.html" in out
    only = run_cli(ws, "report", "recipes/strict.yaml").stdout
    assert "net/" not in only and "strict/cpu-int8" in only
    # a stand-in browser records the URL it is asked to open
    seen = tmp_path / "opened.txt"
    script = tmp_path / "browser.sh"
    script.write_text(f'#!/bin/sh\necho "$1" > {seen}\n')
    script.chmod(0o755)
    env = {**os.environ, "BROWSER": str(script)}
    command = [sys.executable, "-m", "buildsys", "report", "--open"]
    proc = subprocess.run(command, cwd=ws, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert seen.read_text().strip() == (ws / "build/index.html").resolve().as_uri()


def test_report_open_without_index_is_a_usage_error(tmp_path: Path) -> None:
    fresh = make(tmp_path / "fresh")
    proc = run_cli(fresh, "report", "--open", check=2)
    assert "not built" in proc.stdout and "build/index.html does not exist yet" in proc.stderr


def test_up_to_date_build_writes_the_index_without_heavy_imports(ws: Path) -> None:
    (ws / "build/index.html").unlink()
    code = textwrap.dedent(
        """
        import sys
        from buildsys.cli import main
        code = main(["build", "-q"])
        print(code, "matplotlib" in sys.modules, "tensorflow" in sys.modules)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ws, capture_output=True, text=True, timeout=300)
    assert proc.stdout.split() == ["1", "False", "False"], proc.stdout + proc.stderr
    assert "net/cpu-int8/report.html" in (ws / "build/index.html").read_text("utf-8")


def test_report_generation_takes_under_two_seconds(ws: Path) -> None:
    """Cold: a fresh interpreter runs the cpu-int8 report stage (matplotlib import included)."""
    code = textwrap.dedent(
        """
        import tempfile, time
        from pathlib import Path
        from buildsys.hashing import FileHasher
        from buildsys.plan import make_plan
        from buildsys.recipe import RecipeLoader, discover
        from buildsys.stages.base import RunContext
        from buildsys.workspace import Workspace

        ws = Workspace.at(".")
        plan = make_plan(RecipeLoader().load_all(discover([ws.root / "recipes/net.yaml"], ws.root), ws.root), ws)
        stage = next(s for s in plan.stages() if s.kind == "report" and s.target.name == "cpu-int8")
        tmp = Path(tempfile.mkdtemp())
        ctx = RunContext(stage, plan.env, {role: tmp / role for role in stage.outputs()}, FileHasher(ws.hash_db))
        started = time.perf_counter()
        stage.run(ctx)
        print(round(time.perf_counter() - started, 3))
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ws, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    seconds = float(proc.stdout.split()[-1])
    print(f"report stage, cold: {seconds:.3f} s")
    assert seconds < 2.0


def browser() -> str | None:
    return next((found for name in BROWSERS if (found := shutil.which(name))), None)


def headless(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    """Chromium with console messages on stderr: each reads `...:CONSOLE(line)] "message", source: URL`."""
    command = [
        binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
        f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *args,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def console_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


@pytest.mark.skipif(browser() is None, reason="no chromium/chromium-browser/google-chrome installed")
def test_report_renders_in_headless_chromium(ws: Path, tmp_path: Path) -> None:
    binary = browser()
    # the probe sees console errors: a page that logs one and throws must be caught
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><p>x</p><script>console.error("boom"); missing();</script>')
    caught = console_lines(headless(binary, tmp_path / "p0", "--dump-dom", bad.as_uri()).stderr)
    assert any("boom" in line for line in caught) and any("Uncaught" in line for line in caught)

    report = ws / "build/net/axis-artpec9/report.html"
    dom = headless(binary, tmp_path / "p1", "--dump-dom", report.as_uri())
    assert dom.returncode == 0, dom.stderr
    assert console_lines(dom.stderr) == []
    assert '<table id="metrics" class="metrics">' in dom.stdout and dom.stdout.count("<svg ") == 3
    assert "</html>" in dom.stdout

    SCREENSHOT.unlink(missing_ok=True)
    shot = headless(binary, tmp_path / "p2", f"--screenshot={SCREENSHOT}", "--window-size=1280,2000", report.as_uri())
    assert shot.returncode == 0 and console_lines(shot.stderr) == []
    from PIL import Image

    with Image.open(SCREENSHOT) as image:
        assert image.size == (1280, 2000)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
        assert colours is None or len(colours) > 50  # drawn, not a blank page
