"""Regulator taps and capacitor banks in the DOPF: relax, round, resolve (pure numerics).

Taps and bank states are integers, so the problem with them is a mixed-integer QP. The
method, which works with every registered algorithm and keeps the conformance kit as it is:

1. **Relax.** Each regulator gets two continuous variables, steps up and steps down (each in
   [0, the room left that way, at most ``max_move`` steps]), and each bank one, the fraction of
   it switched (closing an open bank, opening a closed one), all in [0, range]. They enter the
   `DOPFProblem` as extra columns of the shed block: a column of voltage sensitivities (one
   step, or the whole bank), a linear cost per step or switching (``c_tap``, ``c_cap``) and a
   small quadratic weight (``w_discrete``) that keeps the problem strictly convex; the
   integer settings pay the same quadratic term in `DiscreteProblem.operation_cost`, so the
   relaxation is a true one and its optimum a lower bound of the mixed-integer optimum.
   (At the relaxation's optimum a regulator never moves up and down at once, so its two
   variables cost exactly what its net move does.)
2. **Round.** The relaxed net move of each device is rounded to the nearest integer; the
   ``branch`` most fractional devices are tried both ways (2^branch combinations), and the
   "move nothing" candidate is always tried.
3. **Resolve.** For each candidate the discrete devices are fixed (the operating point
   shifted by their linear effect) and the continuous problem solved; the feasible candidate
   with the least objective plus operation cost wins. The gap to the relaxation's objective
   bounds the loss from rounding and is reported.

This is a heuristic, not a proof of optimality: tests/test_dopf_discrete.py compares it with
exhaustive enumeration on small instances.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from gridsim.federates.dopf.problem import DOPFProblem, Solution


@dataclass(frozen=True)
class DiscreteProblem:
    """A `DOPFProblem` with regulators and capacitor banks the DOPF may move."""

    base: DOPFProblem
    vt_pu_per_step: np.ndarray
    """d|V| per tap step up, p.u. (n_node x n_tap)."""
    tap_position: np.ndarray
    """Present tap positions (steps from neutral)."""
    tap_low: np.ndarray
    """Lowest position allowed this solve (limit and largest move together)."""
    tap_high: np.ndarray
    vc_pu: np.ndarray
    """|V| change from closing each bank, p.u. (n_node x n_cap)."""
    cap_state: np.ndarray
    """Present state of each bank (1 closed)."""
    ps_t_kw_per_step: np.ndarray | None = None
    """Substation kW per tap step; None: 0 (the effect on losses neglected)."""
    ps_c_kw: np.ndarray | None = None
    """Substation kW change from closing each bank; None: 0."""
    c_tap: float = 2.0
    """Cost per tap step moved (in the objective's units: one step costs 2 kW curtailed)."""
    c_cap: float = 5.0
    """Cost per bank switched."""
    w_discrete: float = 1e-3
    """Quadratic weight of the relaxed moves (strict convexity; small)."""
    branch: int = 3
    """How many of the most fractional devices are rounded both ways."""

    def __post_init__(self) -> None:
        for name, size in (("ps_t_kw_per_step", self.n_tap), ("ps_c_kw", self.n_cap)):
            if getattr(self, name) is None:
                object.__setattr__(self, name, np.zeros(size))
        for name in ("tap_position", "tap_low", "tap_high", "cap_state"):
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=int))

    @property
    def n_tap(self) -> int:
        return self.vt_pu_per_step.shape[1]

    @property
    def n_cap(self) -> int:
        return self.vc_pu.shape[1]

    def operation_cost(self, taps: np.ndarray, caps: np.ndarray) -> float:
        """Cost of moving to tap positions `taps` and bank states `caps` (with the small
        quadratic term of the relaxation, module doc)."""
        d_tap, d_cap = taps - self.tap_position, caps - self.cap_state
        return float(self.c_tap * np.abs(d_tap).sum() + self.c_cap * np.abs(d_cap).sum()
                     + 0.5 * self.w_discrete * (d_tap @ d_tap + d_cap @ d_cap))

    def fixed(self, taps: np.ndarray, caps: np.ndarray) -> DOPFProblem:
        """The continuous problem with the discrete devices at `taps` and `caps`."""
        d_tap, d_cap = taps - self.tap_position, caps - self.cap_state
        changes: dict = {"v0_pu": self.base.v0_pu + self.vt_pu_per_step @ d_tap
                         + self.vc_pu @ d_cap}
        if self.base.p_sub_max_kw is not None:
            changes["p_sub0_kw"] = float(self.base.p_sub0_kw + self.ps_t_kw_per_step @ d_tap
                                         + self.ps_c_kw @ d_cap)
        return self.base.replace(**changes)

    def relaxation(self) -> DOPFProblem:
        """Step 1 of the module doc: the discrete moves as extra continuous columns."""
        b = self.base
        up, down = self.tap_high - self.tap_position, self.tap_position - self.tap_low
        close = self.cap_state == 0
        sign_c = np.where(close, 1.0, -1.0)
        columns = np.hstack([self.vt_pu_per_step, -self.vt_pu_per_step, self.vc_pu * sign_c])
        n_extra = columns.shape[1]
        extra_max = np.concatenate([up, down, np.ones(self.n_cap)]).astype(float)
        extra_cost = np.concatenate([np.full(2 * self.n_tap, self.c_tap),
                                     np.full(self.n_cap, self.c_cap)])
        per_load = lambda value: np.broadcast_to(value, (b.n_load,))  # noqa: E731
        changes: dict = {
            "vs_pu_per_kw": np.hstack([b.vs_pu_per_kw, columns]),
            "shed_max_kw": np.concatenate([b.shed_max_kw, extra_max]),
            "c_shed": np.concatenate([per_load(b.c_shed), extra_cost]),
            "w_shed": np.concatenate([per_load(b.w_shed), np.full(n_extra, self.w_discrete)]),
        }
        if b.ps_s_kw_per_kw is not None:
            changes["ps_s_kw_per_kw"] = np.concatenate([
                b.ps_s_kw_per_kw, self.ps_t_kw_per_step, -self.ps_t_kw_per_step,
                self.ps_c_kw * sign_c])
        if b.loss is not None:
            changes["loss"] = np.concatenate([b.loss, np.zeros(n_extra)])
        return b.replace(**changes)

    def relaxed_moves(self, shed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Net tap moves and bank states (both fractional) from the relaxation's shed block."""
        extra = shed[self.base.n_load:]
        up, down = extra[:self.n_tap], extra[self.n_tap:2 * self.n_tap]
        switched = extra[2 * self.n_tap:]
        caps = np.where(self.cap_state == 0, switched, 1.0 - switched)
        return self.tap_position + up - down, caps


@dataclass(frozen=True)
class DiscreteSolution:
    """The chosen discrete settings and the continuous solution that goes with them."""

    solution: Solution
    """Continuous solution of the fixed problem (its objective excludes operation costs)."""
    taps: np.ndarray
    caps: np.ndarray
    objective: float
    """Continuous objective plus operation cost."""
    relaxed_objective: float
    """Objective of the relaxation: a lower bound (nan if the relaxation failed)."""
    candidates: int
    solve_time_s: float
    """Wall-clock time of every solve together, s."""


def candidates(problem: DiscreteProblem, taps: np.ndarray,
               caps: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Step 2 of the module doc: rounded settings to try, "move nothing" first."""
    relaxed = np.concatenate([taps, caps])
    low = np.concatenate([problem.tap_low, np.zeros(problem.n_cap)])
    high = np.concatenate([problem.tap_high, np.ones(problem.n_cap)])
    nearest = np.clip(np.round(relaxed), low, high)
    fraction = np.abs(relaxed - np.round(relaxed))
    branching = [i for i in np.argsort(-fraction, kind="stable")[:problem.branch]
                 if fraction[i] > 1e-6]
    stay = (problem.tap_position.copy(), problem.cap_state.copy())
    out, seen = [stay], {_key(*stay)}
    for choice in itertools.product((np.floor, np.ceil), repeat=len(branching)):
        setting = nearest.copy()
        for i, rounding in zip(branching, choice):
            setting[i] = np.clip(rounding(relaxed[i]), low[i], high[i])
        split = (setting[:problem.n_tap].astype(int), setting[problem.n_tap:].astype(int))
        if _key(*split) not in seen:
            seen.add(_key(*split))
            out.append(split)
    return out


def _key(taps: np.ndarray, caps: np.ndarray) -> tuple:
    return tuple(int(t) for t in taps) + tuple(int(c) for c in caps)


def solve_discrete(problem: DiscreteProblem, algorithm,
                   warm_start: Solution | None = None) -> DiscreteSolution:
    """Relax, round, resolve (module doc) with `algorithm` for every continuous solve.

    If no candidate is feasible, the "move nothing" candidate's (failed or infeasible)
    solution is returned with the present settings.
    """
    relaxed = algorithm.solve(problem.relaxation())
    spent = relaxed.solve_time_s
    if relaxed.status == "optimal":
        tried = candidates(problem, *problem.relaxed_moves(relaxed.shed))
        bound = relaxed.objective
    else:
        tried, bound = [(problem.tap_position.copy(), problem.cap_state.copy())], float("nan")
    best: DiscreteSolution | None = None
    first: Solution | None = None
    for taps, caps in tried:
        solution = algorithm.solve(problem.fixed(taps, caps), warm_start=warm_start)
        spent += solution.solve_time_s
        first = first or solution
        if solution.status != "optimal":
            continue
        total = solution.objective + problem.operation_cost(taps, caps)
        if best is None or total < best.objective - 1e-9:
            best = DiscreteSolution(solution, taps, caps, total, bound, len(tried), 0.0)
    if best is None:
        return DiscreteSolution(first, problem.tap_position.copy(), problem.cap_state.copy(),
                                float("nan"), bound, len(tried), spent)
    return DiscreteSolution(best.solution, best.taps, best.caps, best.objective, bound,
                            len(tried), spent)
