"""The end of ``gridsim run``: a few lines per layer, read from summary.json.

Runs the flagship ``scenarios/ieee123.yaml`` (every layer, links by default
but the recorder's) through the real console script, and checks the report: one line per
layer present, with the figures summary.json holds, the same for the same seed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gridsim.cli.report import summary_lines
from gridsim.wiring import load_federation

REPO = Path(__file__).resolve().parents[1]
FULL = REPO / "scenarios" / "ieee123.yaml"


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, run_gridsim) -> tuple[str, dict]:
    """(stderr, summary.json) of the full stack over its day."""
    out = tmp_path_factory.mktemp("full") / "run"
    code, _, stderr = run_gridsim("run", FULL, "--out", out, "--quiet", timeout=300)
    assert code == 0, stderr
    return stderr, json.loads((out / "summary.json").read_text())


def report_of(stderr: str) -> list[str]:
    """The lines after 'ok: ...' (indented by four spaces)."""
    lines = stderr.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("ok: "))
    return [line[4:] for line in lines[start + 1:] if line.startswith("    ")]


def test_full_stack_runs_and_reports_every_layer(full_run):
    stderr, summary = full_run
    parts = summary["federates"]
    assert summary["status"] == "ok"
    report = report_of(stderr)
    assert [line.split(":")[0].split(" (")[0] for line in report] == [
        "feeder", "estimator", "dopf", "market", "auditor"]
    feeder = parts["feeder"]
    above = sum(round(v, 4) > 1.05 for v in feeder["v_max_pu_per_step"])
    assert report[0] == (f"feeder: |V| {feeder['v_min_pu']:.4f} .. {feeder['v_max_pu']:.4f} "
                         f"pu; {above} of 96 steps above 1.05 pu; 0 commands rejected")
    estimator = parts["estimator"]
    assert f"|V| error mean {estimator['v_error_mean_pu']:.4f}, max " \
           f"{estimator['v_error_max_pu']:.4f} pu over 96 steps" in report[1]
    assert report[2].startswith("dopf (central): 96 solves (optimal 96); curtailment ")
    market = parts["market"]
    assert f"saving {market['saving_usd_per_h']:.2f} $/h" in report[3]
    assert report[3].startswith("market (proportional, 36 entities)")
    assert report[4].startswith(f"auditor: {parts['auditor']['findings']} findings in ")


def test_report_is_the_summarys_and_only_its(full_run):
    """The lines come from summary.json alone: the same summary, the same lines."""
    stderr, summary = full_run
    assert summary_lines(load_federation(FULL), summary) == report_of(stderr)


def test_report_skips_what_it_cannot_read():
    """A layer whose part lacks a figure prints nothing rather than failing the run."""
    federation = load_federation(FULL)
    summary = {"federates": {"feeder": {"steps": 3}, "market": {"rounds": 0},
                             "auditor": {"findings": 2, "findings_by_code": {"A1": 2},
                                         "checks": 9, "rounds": 1}}}
    assert summary_lines(federation, summary) == [
        "market: no round cleared", "auditor: 2 findings (A1 2) in 9 checks of 1 rounds"]
