"""Screening of the voltage limits (`gridsim.federates.dopf.screening`) is exact.

Every algorithm solves the same problems with and without screening and must find the same
optimum; a limit that box screening drops holds at every point of the box; a node without
limits (``inf``) is the same as no node at all.
"""

from __future__ import annotations

import numpy as np
import pytest

from gridsim.federates.dopf.algorithms import ALGORITHMS, make
from gridsim.federates.dopf.instances import random_instance
from gridsim.federates.dopf.problem import DOPFProblem
from gridsim.federates.dopf.screening import bindable

NAMES = sorted(ALGORITHMS)


@pytest.fixture(scope="module")
def problems() -> list[DOPFProblem]:
    """Random instances of IEEE 123's size, half of them with a substation limit, and two
    with 1,200 more nodes whose limits can bind somewhere in the box, not at the optimum."""
    rng = np.random.default_rng(31)
    out = [random_instance(rng, 280, 14, 90) for _ in range(20)]
    return out + [with_quiet_nodes(out[i], rng, 1200) for i in (0, 1)]


def with_quiet_nodes(problem: DOPFProblem, rng: np.random.Generator,
                     count: int) -> DOPFProblem:
    """`problem` with `count` copies of its nodes, 0.03-0.06 p.u. further from the upper
    limit than the originals."""
    copy = rng.integers(0, problem.n_node, count)
    stack = lambda a: np.vstack([a, a[copy]])  # noqa: E731
    return problem.replace(
        v0_pu=np.concatenate([problem.v0_pu, problem.v0_pu[copy] - rng.uniform(
            0.03, 0.06, count)]), vp_pu_per_kw=stack(problem.vp_pu_per_kw),
        vq_pu_per_kvar=stack(problem.vq_pu_per_kvar), vs_pu_per_kw=stack(problem.vs_pu_per_kw))


@pytest.mark.parametrize("name", NAMES)
def test_screened_and_unscreened_give_the_same_optimum(name, problems):
    """Within the algorithm's accuracy: central's tolerances are 1e-9, primal-dual stops
    at a relative duality gap of 1e-5."""
    screened, full = make(name), make(name, screen=False)
    rel = 1e-6 if name == "central" else 1e-4
    for problem in problems:
        a, b = screened.solve(problem), full.solve(problem)
        assert a.status == b.status == "optimal"
        assert a.objective == pytest.approx(b.objective, rel=rel, abs=1e-6)
        np.testing.assert_allclose(a.x, b.x, atol=rel * 10 * max(1.0, np.abs(b.x).max()))
        assert a.max_violation <= 1e-6
        assert a.duals.shape == b.duals.shape


@pytest.mark.parametrize("name", NAMES)
def test_screening_leaves_out_most_limits(name, problems):
    """On the large instances box screening keeps most nodes, row generation solves with
    far fewer (those outside their limits with no action, here)."""
    algorithm = make(name)
    for problem in problems[-2:]:
        kept = np.count_nonzero(np.any(bindable(problem), axis=0))
        assert kept > 0.7 * problem.n_node
        algorithm.solve(problem)
        assert len(algorithm.rows.nodes) < 0.4 * kept


def test_box_screening_drops_only_limits_that_hold_everywhere(problems):
    rng = np.random.default_rng(4)
    for problem in problems[:5] + problems[-1:]:
        upper, lower = bindable(problem)
        lo, hi = problem.bounds
        corners = [np.where(rng.random(lo.size) < 0.5, lo, hi) for _ in range(200)]
        for x in corners + [rng.uniform(lo, hi) for _ in range(50)]:
            v = problem.voltages_pu(x)
            assert np.all(v[~upper] <= problem.v_max_pu + 1e-12)
            assert np.all(v[~lower] >= problem.v_min_pu - 1e-12)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("screen", [True, False])
def test_nodes_without_limits_are_left_out(name, screen, problems):
    """Limits of ``inf`` on a third of the nodes: the optimum of the problem without
    those nodes."""
    problem = problems[0]
    free = np.arange(problem.n_node) % 3 == 0
    open_ = problem.replace(v_min_pu=np.where(free, -np.inf, 0.95),
                            v_max_pu=np.where(free, np.inf, 1.05))
    kept = problem.restrict_nodes(np.flatnonzero(~free))
    algorithm = make(name, screen=screen)
    a, b = algorithm.solve(open_), algorithm.solve(kept)
    assert a.status == b.status == "optimal"
    assert a.objective == pytest.approx(b.objective, rel=1e-5, abs=1e-6)
    assert np.isfinite(a.max_violation)


@pytest.mark.parametrize("name", NAMES)
def test_screened_infeasible_stays_infeasible(name):
    """A limit no point of the box meets: box screening keeps it, and the relaxation with
    it is infeasible, as the full problem is."""
    n = 50
    problem = DOPFProblem(v0_pu=np.r_[1.2, np.full(n - 1, 1.0)],
                          vp_pu_per_kw=np.full((n, 1), 1e-4),
                          vq_pu_per_kvar=np.full((n, 1), 1e-4),
                          vs_pu_per_kw=np.full((n, 1), 1e-4), available_kw=[1.0],
                          kva_rating=[1.0], q0_kvar=[0.0], shed_max_kw=[1.0])
    solution = make(name).solve(problem)
    assert solution.status != "optimal"
    if name == "central":
        assert solution.status == "infeasible"
