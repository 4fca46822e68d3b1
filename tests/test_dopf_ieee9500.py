"""The DOPF on IEEE 9500 at noon with three times its PV (the benchmark's instance).

The feeder is solved once; the DOPF step runs as the federate runs it (`solve_step`). What
is checked: which nodes the DOPF limits, that the step is feasible and optimal for every
algorithm with screening, and that screening does not change the optimum.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from gridsim.federates.chain import feeder_step
from gridsim.federates.dopf.adapter import DOPFSettings, operating_point, solve_step
from gridsim.federates.dopf.algorithms import ALGORITHMS, make
from gridsim.federates.dopf.sensitivity import limited_nodes
from gridsim.federates.feeder.model import FeederModel
from gridsim.feeders import resolve
from gridsim.network import Network

PARAMETERS = {"flexible_loads": [], "shed_max_fraction": 0.5, "v_min": 0.9, "v_max": 1.05,
              "cost_curtailment": 1.0, "cost_shedding": 10.0, "weight_reactive": 1e-4,
              "controlled_regulators": [], "controlled_capacitors": [], "max_tap_move": 2,
              "cost_tap": 2.0, "cost_capacitor": 5.0}


@pytest.fixture(scope="module")
def noon() -> tuple[Network, dict]:
    model = FeederModel(resolve("ieee9500", Path("."), "test"), datetime(2026, 7, 1, 12), 900,
                        pv_scale=3.0)
    messages = feeder_step(model, 0.0)
    return Network.from_topology(messages["topology"]), messages


@pytest.fixture(scope="module")
def steps(noon) -> dict:
    net, messages = noon
    settings = DOPFSettings.from_parameters(PARAMETERS)
    return {name: solve_step(net, messages, settings, make(name)) for name in ALGORITHMS}


def test_limits_only_on_held_phase_conductors(noon, steps):
    """Left out: six ungrounded wye neutrals (conductor 4), the 66 nodes of the floating
    480 V deltas behind those DER transformers, two dead nodes."""
    net, messages = noon
    v = operating_point(net, messages["voltages_magnitude"], messages["voltages_angle"])
    limited = limited_nodes(net, v)
    out = [node for node, keep in zip(net.ids, limited) if not keep]
    assert len(out) == 74
    assert sum(node.endswith(".4") for node in out) == 6
    assert sum(abs(v[net.index[node]]) < 1e-3 for node in out) == 2
    floating = {node for island in net.floating for node in net.nodes_of(island)}
    assert len(floating) == 66 and floating <= set(out)
    problem = steps["central"].problem
    assert np.count_nonzero(np.isfinite(problem.v_max_pu)) == len(net.ids) - 74


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_step_is_optimal_and_meets_the_limits(name, steps):
    step = steps[name]
    assert step.solution.status == "optimal"
    assert step.v0.max() > 1.08
    v = step.problem.voltages_pu(step.solution.x)
    assert v[step.problem.limited].max() <= 1.05 + 1e-6


def test_algorithms_agree(steps):
    a, b = steps["central"].solution, steps["primal-dual"].solution
    assert a.objective == pytest.approx(b.objective, rel=1e-3)


def test_screening_keeps_the_optimum(steps):
    """Primal-dual on every limit (about 8,000 rows after its own box test) finds the
    optimum screening found."""
    problem = steps["primal-dual"].problem
    full = make("primal-dual", screen=False).solve(problem)
    assert full.status == "optimal"
    assert full.objective == pytest.approx(steps["primal-dual"].solution.objective, rel=1e-4)
