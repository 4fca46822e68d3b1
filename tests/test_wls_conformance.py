"""Every state estimator in the registry passes the estimator kit (`wls.conformance`), and the
kit fails an estimator that miscounts its degrees of freedom.

The cases, their hand-counted degrees of freedom and the properties live in the kit; here
they run per estimator and case, so a failure names both.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy.stats import chi2

from gridsim.federates.wls import conformance
from gridsim.federates.wls.estimator import WLSEstimator
from gridsim.federates.wls.registry import ESTIMATORS, make

NAMES = conformance.names()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("build", conformance.HAND_MADE, ids=lambda build: build.__name__)
def test_hand_made_case(name, build):
    assert conformance.check_case(name, build()) == []


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("case", conformance.random_cases(), ids=lambda case: case.name)
def test_random_case(name, case):
    assert conformance.check_case(name, case) == []


def test_cases_cover_every_property():
    """Noise-free states, no redundancy (dof 0), another confidence, a gross error."""
    cases = [build() for build in conformance.HAND_MADE]
    assert sum(case.truth_pu is not None for case in cases) >= 3
    assert any(case.dof == 0 for case in cases)
    assert any(case.settings.chi2_confidence != 0.95 for case in cases)
    assert any(case.removed for case in cases)
    assert any(not case.removed and case.truth_pu is None for case in cases)
    assert any(case.sigma_pu for case in cases)


class NoSlackTerm(WLSEstimator):
    """The real estimator, but its degrees of freedom forget the slack's fixed angles."""

    def estimate(self, ms):
        result = super().estimate(ms)
        dof = result.dof - len(self.net.slack)
        threshold = float(chi2.ppf(self.settings.chi2_confidence, dof)) if dof > 0 else None
        return dataclasses.replace(result, dof=dof, chi2_threshold=threshold)


def test_kit_catches_dof_without_the_slack_term(monkeypatch):
    """Three slack states: every case's dof comes out 3 short, and the threshold with it."""
    monkeypatch.setitem(ESTIMATORS, "wls", NoSlackTerm)
    failures = conformance.check("wls", [conformance.full_metering(),
                                         conformance.power_flow()])
    assert failures == [
        "full_metering: dof 9, expected 12",
        f"full_metering: chi-square threshold {chi2.ppf(0.95, 9)}, "
        f"expected {chi2.ppf(0.95, 12)}",
        "power_flow: dof -3, expected 0",
    ]


class DoubledSigma(WLSEstimator):
    """The real estimator, publishing twice its sigma of |V|."""

    def estimate(self, ms):
        result = super().estimate(ms)
        return dataclasses.replace(result, vmag_sigma=2 * result.vmag_sigma)


class NoSigma(WLSEstimator):
    def estimate(self, ms):
        return dataclasses.replace(super().estimate(ms), vmag_sigma=None)


def test_kit_checks_the_sigma_of_v(monkeypatch):
    """Twice the sigma: the slack nodes of `power_flow`, measured by one meter of sigma
    1e-3 and nothing else that can tell their |V|, come out above their meter and off the
    hand-derived value; no sigma at all is a failure on every case."""
    monkeypatch.setitem(ESTIMATORS, "wls", DoubledSigma)
    failures = conformance.check("wls", [conformance.power_flow()])
    assert failures == [f"power_flow: sigma of |V| at {node} is 0.002, above its meter's 0.001"
                        for node in ("s.1", "s.2", "s.3")] + \
        [f"power_flow: sigma of |V| at {node} is 0.002, expected 0.001"
         for node in ("s.1", "s.2", "s.3")]
    monkeypatch.setitem(ESTIMATORS, "wls", NoSigma)
    assert conformance.check("wls", [conformance.full_metering(), conformance.power_flow()]) \
        == ["full_metering: no sigma of |V|", "power_flow: no sigma of |V|"]


def test_registry_by_name():
    assert NAMES == ["wls"]
    for name, cls in ESTIMATORS.items():
        assert cls.name == name
    case = conformance.full_metering()
    assert isinstance(make("wls", case.net), WLSEstimator)
    with pytest.raises(ValueError, match="known: wls"):
        make("kalman", case.net)


def test_estimate_leaves_the_case_unchanged():
    """The kit's cases are data: estimating one twice gives the same answer."""
    case = conformance.gross_error()
    values = case.measurements.value.copy()
    first = conformance.check_case("wls", case)
    assert np.array_equal(case.measurements.value, values)
    assert conformance.check_case("wls", case) == first == []
