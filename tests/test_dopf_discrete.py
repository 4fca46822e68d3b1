"""Regulator taps and capacitor banks in the DOPF: relax, round, resolve against exhaustive
enumeration of every integer setting, on small seeded instances."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from gridsim.federates.dopf.algorithms import make
from gridsim.federates.dopf.discrete import DiscreteProblem, candidates, solve_discrete
from gridsim.federates.dopf.instances import random_instance

TAP_STEP_PU = 0.00625


def instance(seed: int) -> DiscreteProblem:
    """A random 30-node instance with a head-of-feeder regulator, a mid-feeder one (both
    +-2 steps from a random position) and two banks at PV nodes, with random costs."""
    rng = np.random.default_rng(seed)
    base = random_instance(rng, 30, 4, 3)
    n = base.n_node
    starts = [0, int(rng.integers(5, 20))]
    vt = np.column_stack([TAP_STEP_PU * (np.arange(n) >= s) for s in starts])
    vc = np.column_stack([base.vq_pu_per_kvar[:, int(rng.integers(base.n_pv))]
                          * rng.uniform(100, 600) for _ in range(2)])
    position = rng.integers(-3, 4, 2)
    return DiscreteProblem(
        base, vt, position, position - 2, position + 2, vc, rng.integers(0, 2, 2),
        ps_t_kw_per_step=rng.uniform(-5, 5, 2), ps_c_kw=rng.uniform(-2, 2, 2),
        c_tap=float(rng.uniform(0.5, 20)), c_cap=float(rng.uniform(1, 30)))


def exhaustive(problem: DiscreteProblem) -> float:
    """The mixed-integer optimum: every tap position and bank state, each solved."""
    central, best = make("central"), np.inf
    ranges = [range(lo, hi + 1) for lo, hi in zip(problem.tap_low, problem.tap_high)]
    for taps in itertools.product(*ranges):
        for caps in itertools.product((0, 1), repeat=problem.n_cap):
            t, c = np.array(taps), np.array(caps)
            solution = central.solve(problem.fixed(t, c))
            if solution.status == "optimal":
                best = min(best, solution.objective + problem.operation_cost(t, c))
    return best


@pytest.fixture(scope="module")
def compared():
    """(heuristic objective, relaxation bound, exhaustive optimum) on 15 instances."""
    central, out = make("central"), []
    for seed in range(15):
        problem = instance(seed)
        result = solve_discrete(problem, central)
        out.append((result.objective, result.relaxed_objective, exhaustive(problem)))
    return np.array(out)


def test_relaxation_bounds_and_heuristic_never_beats_the_optimum(compared):
    heuristic, bound, optimum = compared.T
    scale = np.maximum(np.abs(optimum), 1.0)
    assert np.all(np.isfinite(optimum))
    assert np.all(bound <= optimum + 1e-6 * scale)
    assert np.all(heuristic >= optimum - 1e-6 * scale)


def test_relax_round_resolve_finds_the_optimum_almost_always(compared):
    """On 30 instances it found the exhaustive optimum on 29, and the last one was 13%
    above it: the bar here is 13 of 15 exact and none more than 20% above."""
    heuristic, _, optimum = compared.T
    gap = (heuristic - optimum) / np.maximum(np.abs(optimum), 1.0)
    assert np.sum(gap < 1e-6) >= 13, gap
    assert gap.max() < 0.2, gap


@pytest.mark.parametrize("seed", [3, 8])
def test_algorithms_agree_on_discrete_settings(seed):
    problem = instance(seed)
    central = solve_discrete(problem, make("central"))
    primal_dual = solve_discrete(problem, make("primal-dual"))
    assert np.array_equal(central.taps, primal_dual.taps)
    assert np.array_equal(central.caps, primal_dual.caps)
    assert primal_dual.objective == pytest.approx(central.objective, rel=1e-3, abs=1e-6)


def test_a_cheap_tap_replaces_continuous_effort():
    """Over-voltage everywhere (1.065 p.u. at the highest node): lowering the head
    regulator costs less than absorbing reactive power and curtailing."""
    problem = instance(1)
    base = problem.base.replace(v0_pu=problem.base.v0_pu + 1.065 - problem.base.v0_pu.max())
    cheap = DiscreteProblem(base, problem.vt_pu_per_step, np.array([0, 0]),
                            np.array([-2, 0]), np.array([2, 0]), problem.vc_pu[:, :0],
                            np.zeros(0, int), c_tap=0.1)
    central = make("central")
    continuous = central.solve(base)
    result = solve_discrete(cheap, central)
    effort = lambda s: s.curt.sum() + np.abs(s.q - base.q0_kvar).sum()  # noqa: E731
    assert continuous.status == result.solution.status == "optimal"
    assert result.taps[0] < 0
    assert effort(result.solution) < effort(continuous)
    assert result.objective < continuous.objective


def test_candidates_start_with_moving_nothing_and_respect_limits():
    problem = instance(2)
    tried = candidates(problem, problem.tap_position + np.array([1.4, -0.5]),
                       np.array([0.5, 1.0]))
    taps, caps = tried[0]
    assert np.array_equal(taps, problem.tap_position)
    assert np.array_equal(caps, problem.cap_state)
    assert len(tried) == len({tuple(t) + tuple(c) for t, c in tried}) <= 1 + 2**problem.branch
    for taps, caps in tried:
        assert np.all((problem.tap_low <= taps) & (taps <= problem.tap_high))
        assert set(caps.tolist()) <= {0, 1}


def test_no_feasible_setting_keeps_the_present_one():
    problem = instance(4)
    impossible = DiscreteProblem(
        problem.base.replace(v_max_pu=0.5, v_min_pu=0.4), problem.vt_pu_per_step,
        problem.tap_position, problem.tap_low, problem.tap_high, problem.vc_pu,
        problem.cap_state)
    result = solve_discrete(impossible, make("central"))
    assert result.solution.status == "infeasible"
    assert np.array_equal(result.taps, problem.tap_position)
    assert np.array_equal(result.caps, problem.cap_state)
