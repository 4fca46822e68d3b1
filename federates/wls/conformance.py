"""Conformance kit: the properties every state estimator in `registry.ESTIMATORS` must have.

No broker, no OpenDSS: a case is a small network (`examples`), one step's measurements and
what is known of the answer. `check_case` estimates one case and lists every property that
fails (an empty list: the estimator conforms on it); `check` runs every hand-made and random
case, `run_kit` every registered estimator (the shape of the DOPF and payment-rule kits):

- it converges, and from noise-free measurements gives the true state back to `STATE_ATOL_PU`;
- degrees of freedom: measurements minus free states, counted by hand in each case. The
  free states are two per complex state, less two per zero-injection state (its complex
  current is 0) and one per slack state (its angle is fixed; its magnitude is measured like
  any other);
- the chi-square threshold is ``chi2.ppf(confidence, dof)`` at the case's confidence, and
  None when nothing is redundant (dof <= 0);
- bad data: a single gross error is found and exactly that meter removed, nothing is removed
  from clean measurements, and the final objective passes the chi-square test;
- uncertainty (`Estimate.vmag_sigma`, published as the |V| message's accuracy): a converged
  estimate gives every observable node a finite, positive sigma of |V|; a node with a |V| meter
  of sigma s is known at least that well (sigma <= s: other measurements only add
  information); and where a case knows it by hand, the value itself (`SIGMA_RTOL`): in
  `power_flow` nothing is redundant, so each slack node's |V| is its meter's reading and its
  sigma is the meter's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import chi2

from gridsim.federates.wls.estimator import Settings
from gridsim.federates.wls.examples import (
    BASE_V,
    DEVICES,
    LINES,
    exact_measurements,
    nodes,
    topology,
    true_state,
)
from gridsim.federates.wls.measurements import VMAG, MeasurementSet
from gridsim.federates.wls.registry import ESTIMATORS, make
from gridsim.network import Network

STATE_ATOL_PU = 1e-8
THRESHOLD_RTOL = 1e-12
SIGMA_RTOL = 1e-6
"""A hand-derived sigma against the estimator's (the weak prior moves it by ~1e-11)."""


@dataclass(frozen=True, eq=False)
class Case:
    """One step to estimate and what every estimator must give on it."""

    name: str
    net: Network
    measurements: MeasurementSet
    dof: int
    """Degrees of freedom of all the measurements, counted by hand."""
    truth_pu: np.ndarray | None = None
    """Every node's voltage, p.u., for noise-free measurements."""
    removed: tuple[str, ...] = ()
    """The meters bad-data removal must take out, in order."""
    settings: Settings = field(default_factory=Settings)
    sigma_pu: dict[str, float] = field(default_factory=dict)
    """Sigma of |V| (p.u.) of some nodes, derived by hand."""


def _noise_free(name: str, dof: int, lines: dict = LINES, devices: Sequence[str] = DEVICES,
                seed: int = 0, settings: Settings | None = None, **metering) -> Case:
    msg, y = topology(lines, devices)
    net = Network.from_topology(msg)
    v = true_state(msg, y, seed, lines=lines)
    return Case(name, net, exact_measurements(net, msg, y, v, **metering), dof,
                truth_pu=v / BASE_V, settings=settings or Settings())


def full_metering() -> Case:
    """|V| at all 15 nodes, P and Q of every device (b, and c = d merged: 12): 27 readings.
    12 states (d shares c's) are 24 unknowns, less 6 for zero injection at a and 3 for the
    slack angles: 15 free, dof = 27 - 15 = 12."""
    return _noise_free("full_metering", 12)


def sparse_metering() -> Case:
    """The slack's |V| (3), both flows of l1 at s (6), one PMU angle at b.1 (1) and the 12
    device injections: 22 readings, 15 free states, dof = 7."""
    return _noise_free("sparse_metering", 7, vmag_nodes=nodes("s"), flows=("l1",),
                       pmu_nodes=("b.1",))


def power_flow() -> Case:
    """The slack's |V| (3) and the 12 device injections: 15 readings for 15 free states, a
    power flow; dof = 0, nothing redundant, so no chi-square threshold. Each slack node's |V|
    is then its meter's reading (its angle is fixed, the injections fit exactly whatever it
    is), so its sigma is the meter's, 1e-3 p.u."""
    case = _noise_free("power_flow", 0, vmag_nodes=nodes("s"))
    return dataclasses.replace(case, sigma_pu={node: 1e-3 for node in nodes("s")})


def unswitched_at_99() -> Case:
    """No switch, devices on b and c: 12 nodes, each its own state (24 unknowns, less 6 for
    a and 3 for the slack: 15 free); |V| at all 12 and 12 injections: dof = 24 - 15 = 9,
    with the bad-data test at 99% confidence."""
    lines = {k: v for k, v in LINES.items() if k != "sw"}
    return _noise_free("unswitched_at_99", 9, lines, ("b", "c"),
                       settings=Settings(chi2_confidence=0.99))


def _noisy(name: str, gross_error: str | None) -> Case:
    msg, y = topology()
    net = Network.from_topology(msg)
    ms = exact_measurements(net, msg, y, true_state(msg, y, seed=3), sigma=1e-3)
    ms.value += ms.sigma * np.random.default_rng(7).standard_normal(len(ms))
    if gross_error is not None:
        ms.value[ms.label.index(gross_error)] += 20 * ms.sigma[ms.label.index(gross_error)]
    return Case(name, net, ms, 12, removed=() if gross_error is None else (gross_error,))


def gross_error() -> Case:
    """`full_metering` with noise of one sigma and |V| at c.2 off by 20 sigma: that meter,
    and only it, goes; dof 12 - 1 = 11 after."""
    return _noisy("gross_error", "v:c.2")


def clean_noise() -> Case:
    """The same noise without the gross error: the chi-square test passes, nothing goes."""
    return _noisy("clean_noise", None)


HAND_MADE: list[Callable[[], Case]] = [full_metering, sparse_metering, power_flow,
                                       unswitched_at_99, gross_error, clean_noise]


def random_cases(count: int = 3, seed: int = 10) -> list[Case]:
    """`full_metering` at true states drawn with seeds ``seed`` to ``seed + count - 1``."""
    return [_noise_free(f"full_metering (seed {seed + i})", 12, seed=seed + i)
            for i in range(count)]


def names() -> list[str]:
    """The registered estimators, which the kit covers."""
    return sorted(ESTIMATORS)


def check_case(name: str, case: Case) -> list[str]:
    """Every property of the module doc that estimator `name` fails on `case`."""
    try:
        result = make(name, case.net, case.settings).estimate(case.measurements)
    except Exception as exc:
        return [f"raised {exc!r}"]
    problems = [] if result.converged else ["not converged"]
    dof = case.dof - len(case.removed)
    if result.dof != dof:
        problems.append(f"dof {result.dof}, expected {dof}")
    expected = float(chi2.ppf(case.settings.chi2_confidence, dof)) if dof > 0 else None
    if (result.chi2_threshold is None) != (expected is None) or (
            expected is not None and not abs(result.chi2_threshold - expected)
            <= THRESHOLD_RTOL * expected):
        problems.append(f"chi-square threshold {result.chi2_threshold}, expected {expected}")
    if list(result.removed) != list(case.removed):
        problems.append(f"removed {result.removed}, expected {list(case.removed)}")
    if result.chi2_threshold is not None and not result.objective <= result.chi2_threshold:
        problems.append(f"objective {result.objective:.6g} above the threshold")
    if case.truth_pu is not None:
        error = float(np.max(np.abs(case.net.node_voltages(result.v) - case.truth_pu)))
        if not error <= STATE_ATOL_PU:
            problems.append(f"state off the truth by {error:.3g} p.u.")
    if result.converged:
        problems += _sigma_problems(case, result)
    return problems


def _sigma_problems(case: Case, result) -> list[str]:
    """The uncertainty properties of the module doc."""
    if result.vmag_sigma is None:
        return ["no sigma of |V|"]
    net, sigma = case.net, np.asarray(result.vmag_sigma)
    observable = np.setdiff1d(np.arange(net.n), result.unobservable)
    problems = [f"sigma of |V| at {', '.join(net.nodes_of([i]))} is {sigma[i]!r}"
                for i in observable if not (np.isfinite(sigma[i]) and sigma[i] > 0)]
    ms = result.measurements
    meter = np.full(net.n, np.inf)
    vmag = ms.kind == VMAG
    np.minimum.at(meter, ms.node[vmag], ms.sigma[vmag])
    problems += [f"sigma of |V| at {', '.join(net.nodes_of([i]))} is {sigma[i]:.6g}, above its "
                 f"meter's {meter[i]:.6g}"
                 for i in observable if sigma[i] > meter[i] * (1 + SIGMA_RTOL)]
    for node, expected in case.sigma_pu.items():
        got = float(sigma[net.state_of[net.index[node]]])
        if not abs(got - expected) <= SIGMA_RTOL * expected:
            problems.append(f"sigma of |V| at {node} is {got:.9g}, expected {expected:.9g}")
    return problems


def check(name: str, cases: Sequence[Case] | None = None) -> list[str]:
    """The whole kit for estimator `name` on `cases` (default: every hand-made and random
    case); each failure names its case."""
    cases = [build() for build in HAND_MADE] + random_cases() if cases is None else cases
    return [f"{case.name}: {problem}" for case in cases for problem in check_case(name, case)]


def run_kit() -> dict[str, list[str]]:
    """`check` for every registered estimator."""
    return {name: check(name) for name in names()}
