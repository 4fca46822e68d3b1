"""The standard deviation of each node's estimated |V| (p.u.), from the estimate's covariance.

Covariance of an equality-constrained WLS estimate. Linearized at the solution ``x``, with
``r = z - h(x)``, the Gauss-Newton step ``dx`` minimizes
``(r - H dx)^T R^-1 (r - H dx) + (x + dx - x_p)^T W_p (x + dx - x_p)`` subject to
``C dx = -c`` (zero injection, slack angles), which is the augmented (KKT) system the estimator
solves (`estimator`)::

    K = [ R    H     0  ]     K [lambda; dx; mu] = [r; W_p (x - x_p); -c]
        [ H^T  -W_p  C^T]
        [ 0    C     0  ]

Eliminating ``lambda = R^-1 (r - H dx)`` leaves ``[[-G, C^T], [C, 0]]`` with
``G = H^T R^-1 H + W_p``. With ``N`` a basis of the null space of ``C``, the state block of
its inverse is ``-E``, ``E = N (N^T G N)^-1 N^T``: the inverse information of the states
along the directions the constraints leave free, and zero across them (a zero-injection
constraint is exact; a slack angle is fixed). So ``E = -(K^-1)_xx``, the state rows of
``K^-1``; and since ``dx = E H^T R^-1 r + ...``, measurement noise of covariance ``R`` gives
the estimate the covariance ``E H^T R^-1 H E = E - E W_p E``.

The priors. ``E`` counts them as information, as the estimate does. The weak prior
(``w_p = 1e-8``) then adds ``w_p |E g|^2`` to a node's variance ``g^T E g``: a relative
``w_p E`` (< 1e-12 at sigma 0.01 p.u.) on an observable node, and a node the prior alone
decides is unobservable (`WLSEstimator.unobservable`) and not published. A floating island's
prior (sigma ``floating_sigma_pu`` on its mean voltage) is a pseudo-measurement of a
quantity the meters cannot see, and its uncertainty is rightly part of the island's sigmas.

|V| of a state with ``x = (e, f)`` moves by ``g = (e, f) / |V|`` (``(1, 0)`` at ``|V| = 0``,
as `functions` does), so ``sigma^2 = g^T E g`` from the 2x2 block of ``K^-1`` at the node's
two state rows. ``K`` is built at the solution: the estimator's last factorization may be
that of an earlier iterate (chord iterations keep factors while steps shrink fourfold; from
the no-load start on the test network, its Jacobian gave sigmas 9 % off the Monte Carlo).
Those factors still serve to solve with ``K``, refined until the correction vanishes.

This is the covariance of the WLS minimum. Where the chord iterations stop is that minimum
only if the factors they kept are of ``K`` there: with noisy measurements their fixed point
solves the normal equations of the kept Jacobian. On IEEE 123 over a day (warm-started, as
the federate is) it is within 1.9e-5 p.u., 2 % of sigma, of the minimum; on the test network
from the no-load start at every trial, its spread was 26 % wider than sigma.

Two ways to the blocks:

- ``"frontal"`` (default): `frontal.FrontalInverse`, the inverse on the network's bus tree;
  its symbolic part is kept while the pattern of ``K`` and the measurement set's layout stay
  the same. It is checked against solves with ``K`` on `Settings.uncertainty_check_nodes`
  nodes, and when one is off by more than `Settings.uncertainty_rtol` (a block pivoting gone
  wrong) the solves below replace it.
- ``"solve"``: one right-hand side per node: 0.05 ms per node on IEEE 123 but 2 to 3 ms per
  node on IEEE 9500 (20 s for 9,267 nodes). Used only up to
  `Settings.uncertainty_max_entries` (rows of ``K`` times nodes); past it no sigma is
  published for the step (the message's accuracy is None).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from gridsim.federates.wls.frontal import FrontalInverse
from gridsim.federates.wls.measurements import MeasurementSet
from gridsim.network import Network

if TYPE_CHECKING:
    from gridsim.federates.wls.estimator import WLSEstimator

log = logging.getLogger("gridsim.wls")

VARIANCE_FLOOR = 1e-12
"""p.u.^2 (sigma 1e-6 p.u.): variances are compared relative to their size plus this."""

GROUP_ROWS = 24
"""`FrontalInverse.max_rows`: groups of up to this many rows along chains. Numeric time on
IEEE 9500 74 ms at 24, 114 ms at 48 (larger blocks, more padding); IEEE 123 3.2 and 3.7 ms."""


class VoltageUncertainty:
    """Sigma of |V| per state for one estimator's network; keeps what depends only on the
    measurement set's layout (`_Structure`) from one estimate to the next."""

    def __init__(self, net: Network):
        self.net = net
        first: dict[int, str] = {}
        for node, state in zip(net.ids, net.state_of):
            first.setdefault(int(state), node.split(".")[0])
        names = {bus: i for i, bus in enumerate(sorted(set(first.values())))}
        self.bus = np.array([names[first[s]] for s in range(net.n)], dtype=np.int64)
        self._structure: _Structure | None = None
        self.method = ""
        """How the last sigmas were computed: "frontal", "solve", or "" (none)."""

    def groups(self, ms: MeasurementSet) -> np.ndarray:
        """The bus of every row of ``K``: measurements (their own node), states (e, then f),
        zero-injection constraints (real, imaginary), slack angles."""
        bus, net = self.bus, self.net
        return np.concatenate([bus[ms.node], bus, bus, bus[net.zero_injection],
                               bus[net.zero_injection], bus[net.slack]])

    def of_estimate(self, estimator: WLSEstimator, ms: MeasurementSet, lu, jac: sp.csr_matrix,
                    x: np.ndarray, unobservable: np.ndarray) -> np.ndarray | None:
        """Sigma of |V| (p.u.) of every state of a converged estimate (NaN where
        unobservable), or None when there is none (over budget, or a numerical failure:
        logged, and the estimate is published without it).

        ``K`` is built with the Jacobian `jac` at the solution `x`; `lu` is the estimator's
        last factorization (`_ScaledLU`), for solves.
        """
        settings, n = estimator.settings, self.net.n
        self.method = ""
        try:
            if self._structure is None or not self._structure.matches(ms, jac):
                self._structure = _Structure(estimator, ms, jac, self.groups(ms))
            structure = self._structure
            kkt, scaled, scale = structure.matrices(ms, jac)
            states = np.setdiff1d(np.arange(n), unobservable)
            e, f = x[states], x[states + n]
            mag = np.hypot(e, f)
            dead = mag == 0.0
            safe = np.where(dead, 1.0, mag)
            g = np.stack([np.where(dead, 1.0, e / safe), np.where(dead, 0.0, f / safe)])
            solver = _Solver(kkt, scaled, scale, lu)
            variance = self._variance(structure, solver, states, g, settings)
        except (np.linalg.LinAlgError, ValueError, RuntimeError) as exc:
            log.warning("no |V| sigma: %s", exc)
            self.method = ""
            return None
        if variance is None:
            return None
        out = np.full(n, np.nan)
        out[states] = np.sqrt(np.maximum(variance, 0.0))
        return out

    def _variance(self, structure: _Structure, solver: _Solver, states: np.ndarray,
                  g: np.ndarray, settings) -> np.ndarray | None:
        """``g^T E g`` per state: frontal, checked, else solved per node within budget."""
        variance = None
        try:
            z = structure.frontal.invert(solver.scaled.data)
            variance = -(g[0] ** 2 * z[structure.ee[states]]
                         + 2.0 * g[0] * g[1] * z[structure.ef[states]]
                         + g[1] ** 2 * z[structure.ff[states]])
        except np.linalg.LinAlgError as exc:
            log.warning("frontal inverse failed (%s); solving per node", exc)
        rows = np.stack([structure.m + states, structure.m + self.net.n + states])
        if variance is not None and len(states) and settings.uncertainty_check_nodes > 0:
            check = _check_set(variance, settings.uncertainty_check_nodes)
            exact = solver.variance(rows[:, check], g[:, check])
            if np.any(np.abs(variance[check] - exact)
                      > settings.uncertainty_rtol * (np.abs(exact) + VARIANCE_FLOOR)):
                log.warning("frontal |V| variances off the solved ones by up to %.2g "
                            "(relative); solving per node",
                            float(np.max(np.abs(variance[check] / exact - 1))))
                variance = None
        if variance is not None:
            self.method = "frontal"
            return variance
        if solver.kkt.shape[0] * len(states) > settings.uncertainty_max_entries:
            log.warning("no |V| sigma: %d nodes x %d rows exceeds uncertainty_max_entries",
                        len(states), solver.kkt.shape[0])
            return None
        self.method = "solve"
        return solver.variance(rows, g)


class _Structure:
    """What stays while the measurement set's layout does: the pattern of ``K``, where each of
    its entries comes from (sigmas, Jacobian, the constant prior and constraint blocks), the
    frontal inverse's symbolic part, and where each state's 2x2 block sits in it. Building
    ``K`` from it is one gather, where `sp.bmat` took 1.8 ms on IEEE 123."""

    def __init__(self, estimator: WLSEstimator, ms: MeasurementSet, jac: sp.csr_matrix,
                 groups: np.ndarray):
        net, n = estimator.net, estimator.net.n
        self.m = m = len(ms)
        self.node = ms.node.copy()
        self.jac_indptr, self.jac_indices = jac.indptr.copy(), jac.indices.copy()
        prior, cjac = estimator._prior.tocsr(), estimator._cjac.tocsr()
        start = np.cumsum([1, m, jac.nnz, prior.nnz])  # codes from 1: none is dropped

        def coded(a: sp.csr_matrix, first: int) -> sp.csr_matrix:
            out = a.copy()
            out.data = np.arange(first, first + a.nnz, dtype=float)
            return out

        j, p, c = coded(jac, start[1]), coded(prior, start[2]), coded(cjac, start[3])
        code = sp.bmat([[sp.diags(np.arange(start[0], start[1], dtype=float)), j, None],
                        [j.T, p, c.T], [None, c, None]], format="csr")
        code.sum_duplicates()  # sorted (the blocks do not overlap: nothing is summed)
        self.indptr, self.indices = code.indptr, code.indices
        self.source = code.data.astype(np.int64) - 1
        self.row = np.repeat(np.arange(code.shape[0]), np.diff(code.indptr))
        self.constant = np.concatenate([-prior.data, cjac.data])
        row_max = abs(cjac).max(axis=1).toarray().ravel()
        self.constraint_scale = 1.0 / np.where(row_max > 0, row_max, 1.0)
        root = m + int(net.slack[0]) if len(net.slack) else 0
        self.frontal = FrontalInverse(code, groups, root, GROUP_ROWS)
        e, f = m + np.arange(n), m + n + np.arange(n)
        front = self.frontal.group[e]
        self.ee = self.frontal.position(front, e, e)
        self.ef = self.frontal.position(front, e, f)
        self.ff = self.frontal.position(front, f, f)

    def matches(self, ms: MeasurementSet, jac: sp.csr_matrix) -> bool:
        """Whether `ms` has this layout: the same measurements at the same nodes, and so the
        same pattern of ``K`` and the same rows in each group."""
        return (len(ms) == self.m and np.array_equal(ms.node, self.node)
                and np.array_equal(jac.indptr, self.jac_indptr)
                and np.array_equal(jac.indices, self.jac_indices))

    def matrices(self, ms: MeasurementSet, jac: sp.csr_matrix):
        """``K``, ``D K D`` (CSR) and ``D``, the estimator's scaling (measurement rows by
        1/sigma, constraint rows by 1/their largest entry), at these sigmas and Jacobian.
        ``D`` is 1 at the state rows, so there ``(D K D)^-1`` is ``K^-1``."""
        data = np.concatenate([ms.sigma ** 2, jac.data, self.constant])[self.source]
        shape = (len(self.indptr) - 1,) * 2
        kkt = sp.csr_matrix((data, self.indices, self.indptr), shape=shape)
        n2 = shape[0] - self.m - len(self.constraint_scale)
        scale = np.concatenate([1.0 / ms.sigma, np.ones(n2), self.constraint_scale])
        scaled = sp.csr_matrix((data * scale[self.row] * scale[self.indices], self.indices,
                                self.indptr), shape=shape)
        return kkt, scaled, scale


def _check_set(variance: np.ndarray, count: int) -> np.ndarray:
    """The nodes checked against solves: the smallest positive and the largest variance
    (near the substation, where rounding is worst, and far from every meter), then evenly
    spaced. (A de-energized node's variance is 0: its state is held at 0 exactly.)"""
    positive = np.where(variance > 0, variance, np.inf)
    picks = [int(np.argmin(positive)), int(np.argmax(variance))]
    picks += np.linspace(0, len(variance) - 1, max(count - 2, 0)).astype(int).tolist()
    return np.unique(np.array(picks[:count], dtype=np.int64))


class _Solver:
    """Solves with ``K`` through the estimator's factors of a nearby ``K`` (refined until the
    correction is below `RTOL` of the solution: 2 to 4 steps from the last step's estimate,
    22 from the no-load start on IEEE 9500), or through a fresh factorization of ``K`` when
    refinement does not get there in `MAX_REFINE` steps."""

    RTOL = 1e-9
    MAX_REFINE = 30

    def __init__(self, kkt: sp.csr_matrix, scaled: sp.csr_matrix, scale: np.ndarray, lu):
        self.kkt, self.scaled, self.scale, self.lu = kkt, scaled, scale, lu

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        z = self.lu.solve(rhs)
        for _ in range(self.MAX_REFINE):
            step = self.lu.solve(rhs - self.kkt @ z)
            z += step
            if np.max(np.abs(step)) <= self.RTOL * np.max(np.abs(z)):
                return z
        d = self.scale[:, None] if rhs.ndim == 2 else self.scale
        return d * spla.splu(self.scaled.tocsc()).solve(d * rhs)

    def variance(self, rows: np.ndarray, g: np.ndarray,
                 chunk_entries: float = 2.5e6) -> np.ndarray:
        """``-g^T K^-1 g`` per column: one right-hand side per state, in chunks."""
        size = self.kkt.shape[0]
        out = np.empty(rows.shape[1])
        step = max(1, int(chunk_entries // size))
        for lo in range(0, rows.shape[1], step):
            hi = min(lo + step, rows.shape[1])
            cols = np.arange(hi - lo)
            rhs = np.zeros((size, hi - lo))
            rhs[rows[0, lo:hi], cols] = g[0, lo:hi]
            rhs[rows[1, lo:hi], cols] = g[1, lo:hi]
            out[lo:hi] = -np.einsum("ij,ij->j", rhs, self.solve(rhs))
        return out
