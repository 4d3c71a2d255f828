"""ONNX backend node cases through the converter: the pass list holds, every other claimed case is excluded.

Every claimed case runs once per session (`conformance.run_all`, in worker
processes); then each listed case is its own test, so a regression, or an
excluded case that started passing, shows up by name. How cases are built and
compared: tests/conformance.py. Refresh the lists with
`python tests/conformance.py --update`.
"""

from __future__ import annotations

from dataclasses import dataclass

import conformance
import pytest

PASSLIST = conformance.read_passlist()
EXCLUDED = conformance.read_excluded()
UPDATE = "python tests/conformance.py --update"


@dataclass(frozen=True)
class Run:
    outcomes: dict[str, conformance.Outcome]
    report: str


@pytest.fixture(scope="session")
def run(request) -> Run:
    ops = conformance.claimed_ops()
    claimed, skipped = conformance.split_claimed(conformance.generate_cases(), ops)
    outcomes = conformance.run_all(claimed, conformance.default_jobs())
    text = conformance.report(claimed, outcomes, ops, skipped)
    request.addfinalizer(lambda: _show(request.config, "\n\nONNX conformance\n" + text))
    return Run({o.name: o for o in outcomes}, text)


def _show(config, text: str) -> None:
    """Write past pytest's output capture: pass/total per op at the end of the session."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line(text)


def _outcome(run: Run, name: str, listed_in: str) -> conformance.Outcome:
    outcome = run.outcomes.get(name)
    if outcome is None:
        pytest.fail(
            f"{name} is listed in {listed_in} but is not a claimed case (its ops are no longer all claimed, "
            f"or onnx renamed it): remove it ({UPDATE})"
        )
    return outcome


@pytest.mark.parametrize("name", PASSLIST)
def test_passlisted_case_passes(run, name):
    outcome = _outcome(run, name, "passlist.txt")
    assert outcome.passed, f"{name} regressed: {outcome.reason}"


@pytest.mark.parametrize("name", sorted(EXCLUDED))
def test_excluded_case_still_fails(run, name):
    outcome = _outcome(run, name, "excluded.txt")
    if outcome.passed:
        pytest.fail(f"{name} passes now: move it from excluded.txt to passlist.txt ({UPDATE})")
    pytest.xfail(f"{EXCLUDED[name]} [{outcome.reason}]")


def test_every_claimed_case_is_listed(run):
    unlisted = sorted(set(run.outcomes) - set(PASSLIST) - set(EXCLUDED))
    lines = [f"  {n}: {'passes' if run.outcomes[n].passed else run.outcomes[n].reason}" for n in unlisted]
    assert not unlisted, (
        f"{len(unlisted)} claimed cases are in neither passlist.txt nor excluded.txt; run {UPDATE}, "
        "then give each new exclusion a reason:\n" + "\n".join(lines)
    )


def test_lists_are_consistent():
    duplicates = sorted({n for n in PASSLIST if PASSLIST.count(n) > 1})
    both = sorted(set(PASSLIST) & set(EXCLUDED))
    unreasoned = sorted(n for n, why in EXCLUDED.items() if not why or why.startswith("TODO"))
    assert not duplicates, f"listed twice in passlist.txt: {duplicates}"
    assert not both, f"in both passlist.txt and excluded.txt: {both}"
    assert not unreasoned, f"excluded.txt needs a reviewed reason for: {unreasoned}"
