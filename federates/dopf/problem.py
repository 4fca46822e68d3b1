"""The DOPF problem as plain arrays: what every algorithm solves (pure numerics).

Decision variables, in this order (the standard form's ``x``)::

    x = [curt (n_pv, kW of PV curtailment), q (n_pv, kvar of PV reactive output),
         shed (n_load, kW of flexible load shed)]

Linear model around the operating point (sensitivities are with respect to *injection*, the
sign convention of `gridsim.messages`: curtailment lowers injection, shedding raises it)::

    v     = v0    + Vp @ (-curt) + Vq @ (q - q0) + Vs @ shed          (p.u.)
    p_sub = p_sub0 + Ps_p @ (-curt) + Ps_q @ (q - q0) + Ps_s @ shed   (kW, import > 0)

Constraints: ``v_min <= v <= v_max``; ``p_sub <= p_sub_max`` if a limit is given;
``0 <= curt <= available_kw``; ``|q| <= q_limit``; ``0 <= shed <= shed_max_kw``.

Reactive limit: ``q_limit = sqrt(kva_rating^2 - available_kw^2)`` (0 if the rating is below
the available power). The box ``|q| <= q_limit`` lies inside the inverter's circle
``(available - curt)^2 + q^2 <= kva^2`` for every curtailment, so it is conservative (it gives
up the extra kvar that curtailment frees), linear, and the same for every algorithm.

Objective (strictly convex, so the optimum is unique and gradient methods converge)::

    c_curt * sum(curt) + w_curt/2 * sum(curt^2) + c_shed . shed + w_shed/2 * sum(shed^2)
      + w_q/2 * sum((q - q0)^2) + loss . x

Default weights, in cost units per kW (or kvar): curtailment ``c_curt = 1``, shedding ten
times dearer (``c_shed = 10``), small quadratic terms ``w_curt = 1e-3``, ``w_shed = 1e-2``
per kW^2 (at 100 kW they add 5% and 5% to the linear cost: they spread effort over
devices and make the optimum unique), and ``w_q = 1e-2`` per kvar^2 (moving q by 100 kvar
costs 50, as much as curtailing 50 kW: small reactive moves come first, curtailment joins
when they grow). ``loss`` (cost of the linear change of losses per unit of ``x``)
defaults to 0. Every weight is a field, a scalar or one value per device.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Literal

import numpy as np


@dataclass(frozen=True)
class StandardForm:
    """``min g.x + 1/2 sum(h x^2) + c0  s.t.  A x <= b,  lo <= x <= hi`` (h > 0).

    Rows of ``A``: ``v <= v_max`` for every node (p.u.), then ``-v <= -v_min`` (p.u.), then
    ``p_sub <= p_sub_max`` (kW) if the problem has a substation limit.
    """

    g: np.ndarray
    h: np.ndarray
    c0: float
    A: np.ndarray
    b: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    rows_v_max: slice
    rows_v_min: slice
    row_p_sub: int | None

    def objective(self, x: np.ndarray) -> float:
        """The objective at ``x``."""
        return float(self.g @ x + 0.5 * (self.h * x) @ x + self.c0)

    def max_violation(self, x: np.ndarray) -> float:
        """Largest violation of any row or bound (0 if feasible); units as the row's."""
        worst = max(np.max(self.lo - x, initial=0.0), np.max(x - self.hi, initial=0.0))
        return float(max(worst, np.max(self.A @ x - self.b, initial=0.0)))


NO_LIMIT = {"v_min_pu": -np.inf, "v_max_pu": np.inf}
"""The only non-finite values a `DOPFProblem` accepts: a voltage limit that is absent."""


@dataclass(frozen=True)
class DOPFProblem:
    """One DOPF instance; arrays are converted to float and checked once, at construction,
    and kept read-only (`replace` shares them instead of copying: on IEEE 9500 the
    sensitivities are 40 MB)."""

    v0_pu: np.ndarray
    """|V| in p.u., one per node (n_node), at the operating point brought back to no
    curtailment, no shedding and reactive output ``q0_kvar``."""
    vp_pu_per_kw: np.ndarray
    """d|V|/d(PV active injection), p.u. per kW (n_node x n_pv)."""
    vq_pu_per_kvar: np.ndarray
    """d|V|/d(PV reactive injection), p.u. per kvar (n_node x n_pv)."""
    vs_pu_per_kw: np.ndarray
    """d|V|/d(load shed), p.u. per kW (n_node x n_load)."""
    available_kw: np.ndarray
    """PV output without curtailment, kW (n_pv)."""
    kva_rating: np.ndarray
    """Inverter rating, kVA (n_pv)."""
    q0_kvar: np.ndarray
    """PV reactive output at the operating point, kvar (n_pv)."""
    shed_max_kw: np.ndarray
    """Flexible (sheddable) part of each load, kW (n_load)."""
    v_min_pu: float | np.ndarray = 0.95
    """Lower limit of |V|, p.u., one for every node or one per node; ``-inf``: none."""
    v_max_pu: float | np.ndarray = 1.05
    """Upper limit of |V|, p.u.; ``inf``: none (a node whose |V| is not the DOPF's to
    limit, see `gridsim.federates.dopf.federate.build_problem`)."""
    p_sub0_kw: float = 0.0
    """Substation import at the same point as ``v0_pu``, kW (> 0 importing)."""
    ps_p_kw_per_kw: np.ndarray | None = None
    """d(p_sub)/d(PV active injection), kW per kW (n_pv), about -1."""
    ps_q_kw_per_kvar: np.ndarray | None = None
    """d(p_sub)/d(PV reactive injection), kW per kvar (n_pv), the loss change."""
    ps_s_kw_per_kw: np.ndarray | None = None
    """d(p_sub)/d(load shed), kW per kW (n_load), about -1."""
    p_sub_max_kw: float | None = None
    """Import limit, kW; None: no substation constraint."""
    c_curt: float | np.ndarray = 1.0
    w_curt: float | np.ndarray = 1e-3
    c_shed: float | np.ndarray = 10.0
    w_shed: float | np.ndarray = 1e-2
    w_q: float | np.ndarray = 1e-2
    loss: np.ndarray | None = field(default=None)
    """Cost of the linear change of losses per unit of x (2 n_pv + n_load); None: 0."""

    def __post_init__(self) -> None:
        n_node, n_pv = np.shape(self.vp_pu_per_kw)
        n_load = np.shape(self.vs_pu_per_kw)[1]
        shapes = {"v0_pu": (n_node,), "vp_pu_per_kw": (n_node, n_pv),
                  "vq_pu_per_kvar": (n_node, n_pv), "vs_pu_per_kw": (n_node, n_load),
                  "available_kw": (n_pv,), "kva_rating": (n_pv,), "q0_kvar": (n_pv,),
                  "shed_max_kw": (n_load,), "ps_p_kw_per_kw": (n_pv,),
                  "ps_q_kw_per_kvar": (n_pv,), "ps_s_kw_per_kw": (n_load,),
                  "loss": (2 * n_pv + n_load,), "v_min_pu": (n_node,), "v_max_pu": (n_node,),
                  "c_curt": (n_pv,), "w_curt": (n_pv,), "c_shed": (n_load,),
                  "w_shed": (n_load,), "w_q": (n_pv,)}
        scalar_allowed = {"v_min_pu", "v_max_pu", "c_curt", "w_curt", "c_shed", "w_shed", "w_q"}
        for name, shape in shapes.items():
            value = getattr(self, name)
            if value is None:
                continue
            array = np.asarray(value, dtype=float)
            if array.shape != shape and not (name in scalar_allowed and array.ndim == 0):
                raise ValueError(f"DOPFProblem.{name}: expected shape {shape}"
                                 f"{' or a scalar' if name in scalar_allowed else ''}, "
                                 f"got {array.shape}")
            if not np.all(np.isfinite(array) | (array == NO_LIMIT.get(name, np.nan))):
                raise ValueError(f"DOPFProblem.{name}: not finite")
            if array.ndim:
                array = array.view()
                array.flags.writeable = False
            object.__setattr__(self, name, float(array) if array.ndim == 0 else array)
        for name in ("available_kw", "kva_rating", "shed_max_kw"):
            if np.any(getattr(self, name) < 0):
                raise ValueError(f"DOPFProblem.{name}: must be >= 0")
        for name in ("w_curt", "w_shed", "w_q"):
            if np.any(np.asarray(getattr(self, name)) <= 0):
                raise ValueError(f"DOPFProblem.{name}: must be > 0 (strict convexity)")
        if self.p_sub_max_kw is not None and any(
                getattr(self, n) is None
                for n in ("ps_p_kw_per_kw", "ps_q_kw_per_kvar", "ps_s_kw_per_kw")):
            raise ValueError("DOPFProblem.p_sub_max_kw needs ps_p_kw_per_kw, "
                             "ps_q_kw_per_kvar and ps_s_kw_per_kw")

    @property
    def n_node(self) -> int:
        return self.vp_pu_per_kw.shape[0]

    @property
    def n_pv(self) -> int:
        return self.vp_pu_per_kw.shape[1]

    @property
    def n_load(self) -> int:
        return self.vs_pu_per_kw.shape[1]

    @property
    def limited(self) -> np.ndarray:
        """Which nodes have a voltage limit (at least one finite)."""
        return np.broadcast_to(np.isfinite(self.v_max_pu) | np.isfinite(self.v_min_pu),
                               (self.n_node,))

    @property
    def q_limit_kvar(self) -> np.ndarray:
        """Box limit of |q|: ``sqrt(kva^2 - available^2)``, 0 if negative (module doc)."""
        return np.sqrt(np.clip(self.kva_rating**2 - self.available_kw**2, 0.0, None))

    @property
    def shape_key(self) -> tuple[int, int, int, bool]:
        """What fixes the shape of the standard form: (n_node, n_pv, n_load, has p_sub)."""
        return self.n_node, self.n_pv, self.n_load, self.p_sub_max_kw is not None

    def split(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(curt, q, shed)`` from a standard-form ``x``."""
        return x[:self.n_pv], x[self.n_pv:2 * self.n_pv], x[2 * self.n_pv:]

    def voltages_pu(self, x: np.ndarray) -> np.ndarray:
        """Predicted |V| in p.u. after applying ``x``."""
        curt, q, shed = self.split(x)
        return (self.v0_pu - self.vp_pu_per_kw @ curt
                + self.vq_pu_per_kvar @ (q - self.q0_kvar) + self.vs_pu_per_kw @ shed)

    def p_sub_kw(self, x: np.ndarray) -> float:
        """Predicted substation import after applying ``x``, kW (needs the ``ps_*`` fields)."""
        curt, q, shed = self.split(x)
        return float(self.p_sub0_kw - self.ps_p_kw_per_kw @ curt
                     + self.ps_q_kw_per_kvar @ (q - self.q0_kvar) + self.ps_s_kw_per_kw @ shed)

    def objective(self, x: np.ndarray) -> float:
        """The objective at ``x`` (formula in the module doc)."""
        g, h, c0 = self._objective_terms
        return float(g @ x + 0.5 * (h * x) @ x + c0)

    def max_violation(self, x: np.ndarray) -> float:
        """Largest violation of any constraint or bound: p.u. for voltages, kW or kvar
        for the substation limit and the bounds; 0 if ``x`` is feasible. The same as the
        standard form's, without building it."""
        lo, hi = self.bounds
        v = self.voltages_pu(x)
        worst = [lo - x, x - hi, v - self.v_max_pu, self.v_min_pu - v]
        if self.p_sub_max_kw is not None:
            worst.append(np.array([self.p_sub_kw(x) - self.p_sub_max_kw]))
        return float(max(np.max(w, initial=0.0) for w in worst))

    @cached_property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """``(lo, hi)`` of ``x``: ``[0, -q_limit, 0]`` and ``[available, q_limit, shed_max]``."""
        q_lim = self.q_limit_kvar
        return (np.concatenate([np.zeros(self.n_pv), -q_lim, np.zeros(self.n_load)]),
                np.concatenate([self.available_kw, q_lim, self.shed_max_kw]))

    @cached_property
    def _objective_terms(self) -> tuple[np.ndarray, np.ndarray, float]:
        """``(g, h, c0)`` of the objective ``g.x + 1/2 sum(h x^2) + c0``."""
        ones_pv, ones_load = np.ones(self.n_pv), np.ones(self.n_load)
        w_q = self.w_q * ones_pv
        g = np.concatenate([self.c_curt * ones_pv, -w_q * self.q0_kvar,
                            self.c_shed * ones_load])
        if self.loss is not None:
            g = g + self.loss
        h = np.concatenate([self.w_curt * ones_pv, w_q, self.w_shed * ones_load])
        return g, h, float(0.5 * (w_q * self.q0_kvar) @ self.q0_kvar)

    def restrict_nodes(self, nodes: np.ndarray) -> DOPFProblem:
        """The problem with the voltage limits of `nodes` (positions) only: a relaxation,
        with the same optimum when the other nodes' limits hold there
        (`gridsim.federates.dopf.screening`)."""
        per_node = lambda value: value if np.ndim(value) == 0 else value[nodes]  # noqa: E731
        return self.replace(v0_pu=self.v0_pu[nodes], vp_pu_per_kw=self.vp_pu_per_kw[nodes],
                            vq_pu_per_kvar=self.vq_pu_per_kvar[nodes],
                            vs_pu_per_kw=self.vs_pu_per_kw[nodes],
                            v_min_pu=per_node(self.v_min_pu), v_max_pu=per_node(self.v_max_pu))

    @cached_property
    def standard_form(self) -> StandardForm:
        """The problem as ``min g.x + 1/2 h.x^2 + c0, A x <= b, lo <= x <= hi``."""
        q0 = self.q0_kvar
        g, h, c0 = self._objective_terms
        v_x = np.hstack([-self.vp_pu_per_kw, self.vq_pu_per_kvar, self.vs_pu_per_kw])
        v_const = self.v0_pu - self.vq_pu_per_kvar @ q0
        n = self.n_node
        rows = [v_x, -v_x]
        rhs = [self.v_max_pu - v_const, v_const - self.v_min_pu * np.ones(n)]
        row_p_sub = None
        if self.p_sub_max_kw is not None:
            p_x = np.concatenate([-self.ps_p_kw_per_kw, self.ps_q_kw_per_kvar,
                                  self.ps_s_kw_per_kw])
            p_const = self.p_sub0_kw - self.ps_q_kw_per_kvar @ q0
            rows.append(p_x[None, :])
            rhs.append(np.array([self.p_sub_max_kw - p_const]))
            row_p_sub = 2 * n
        lo, hi = self.bounds
        return StandardForm(
            g=g, h=h, c0=c0, A=np.vstack(rows), b=np.concatenate(rhs), lo=lo, hi=hi,
            rows_v_max=slice(0, n), rows_v_min=slice(n, 2 * n), row_p_sub=row_p_sub)

    def replace(self, **changes) -> DOPFProblem:
        """A copy with some fields changed (the standard form is rebuilt lazily)."""
        return replace(self, **changes)


Status = Literal["optimal", "infeasible", "failed", "max_iterations"]


@dataclass(frozen=True)
class Solution:
    """The result of one solve; arrays follow the problem's device order."""

    x: np.ndarray
    """Standard-form decision vector ``[curt, q, shed]`` (nan if the solver gave none)."""
    curt: np.ndarray
    """PV curtailment, kW."""
    q: np.ndarray
    """PV reactive output, kvar (> 0 injecting)."""
    shed: np.ndarray
    """Load shed, kW."""
    objective: float
    status: Status
    iterations: int
    solve_time_s: float
    """Wall-clock time of `solve`, s."""
    max_violation: float
    """`DOPFProblem.max_violation` of ``x`` (p.u. for voltages, kW for the substation)."""
    duals: np.ndarray | None = None
    """Multipliers of the standard-form rows ``A x <= b`` (>= 0), if the algorithm has them."""

    @classmethod
    def from_x(cls, problem: DOPFProblem, x: np.ndarray | None, status: Status,
               iterations: int, solve_time_s: float,
               duals: np.ndarray | None = None) -> Solution:
        """Fill the derived fields from ``x`` (None: no solution, everything nan)."""
        if x is None:
            x = np.full(2 * problem.n_pv + problem.n_load, np.nan)
        finite = bool(np.all(np.isfinite(x)))
        curt, q, shed = problem.split(x)
        return cls(x=x, curt=curt, q=q, shed=shed,
                   objective=problem.objective(x) if finite else float("nan"),
                   status=status, iterations=iterations, solve_time_s=solve_time_s,
                   max_violation=problem.max_violation(x) if finite else float("inf"),
                   duals=duals)
