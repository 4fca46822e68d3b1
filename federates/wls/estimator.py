"""Three-phase weighted least squares state estimation (pure numerics).

State: the complex voltage of every node in per unit, in rectangular form ``x = [e; f]``.
Each Gauss-Newton step solves the Hachtel augmented system (sparse LU, never the normal
equations, which fail on OpenDSS admittances)::

    [ R    H        0  ] [ lambda ]   [ z - h(x)          ]
    [ H^T  -w_p I   C^T] [ dx     ] = [ w_p (x - x_prior) ]
    [ 0    C        0  ] [ mu     ]   [ -c(x)             ]

with ``R`` the measurement variances, ``H`` the measurement Jacobian, ``C`` the Jacobian of
the exact constraints ``c(x) = 0``: zero injection at every node without a device, and the
slack nodes' reference angles. Zero injection is written as zero *current*, ``Y_z V = 0``,
which is linear: written as P = Q = 0 it is bilinear, and next to regulators and switches
(admittances of 1e7 p.u.) its linearization is only valid within 1e-6 p.u., so
Gauss-Newton diverged even from a start 1e-3 p.u. from the truth. A very weak prior
(``w_p``) toward the no-load voltages keeps the system solvable when parts of the grid are
unobservable; its pull on observable nodes is below 1e-9 p.u. The same factorization then
answers two questions for one extra solve each: which nodes the prior alone decides
(unobservable), and the residual covariance behind the normalized residuals of bad data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from gridsim.federates.wls.functions import Functions
from gridsim.federates.wls.network import MeasurementSet
from scipy.stats import chi2

from gridsim.network import Network


@dataclass
class _ScaledLU:
    """LU of ``D K D``; `solve` answers for ``K`` itself."""

    lu: spla.SuperLU
    scale: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return self.lu.shape

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        """``K^-1 rhs`` for a vector or a matrix of columns."""
        s = self.scale if rhs.ndim == 1 else self.scale[:, None]
        return s * self.lu.solve(s * rhs)


@dataclass
class Settings:
    """Tuning of the estimator (defaults measured on IEEE 13 and 123)."""

    max_iterations: int = 20
    tolerance: float = 1e-9
    prior_weight: float = 1e-8
    chi2_confidence: float = 0.95
    lnr_threshold: float = 4.0
    max_removals: int = 10
    lnr_candidates: int = 200
    """Normalized residuals are computed for at most this many meters (largest |r|/sigma)."""
    unobservable_influence: float = 0.5


@dataclass
class Estimate:
    """The result of one estimate."""

    v: np.ndarray
    converged: bool
    iterations: int
    objective: float
    dof: int
    chi2_threshold: float | None
    measurements: MeasurementSet
    removed: list[str] = field(default_factory=list)
    unobservable: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))


class WLSEstimator:
    """Gauss-Newton WLS on a fixed `Network`; warm-starts from its previous estimate."""

    def __init__(self, net: Network, settings: Settings | None = None):
        self.net = net
        self.settings = settings or Settings()
        n = net.n
        self.x_prior = np.concatenate([net.v_start.real, net.v_start.imag])
        self.x = self.x_prior.copy()
        y_zero = net.y[net.zero_injection]
        g, b = y_zero.real, y_zero.imag
        slack, theta = net.slack, net.slack_angle
        k = len(slack)
        slack_rows = sp.csr_matrix(
            (np.concatenate([-np.sin(theta), np.cos(theta)]),
             (np.concatenate([np.arange(k)] * 2), np.concatenate([slack, slack + n]))),
            shape=(k, 2 * n))
        self._cjac = sp.vstack([sp.hstack([g, -b]), sp.hstack([b, g]), slack_rows], format="csc")

    # -- constraints ----------------------------------------------------------------------

    def _constraints(self, x: np.ndarray):
        """Constraint values c(x) and their (constant) Jacobian C: zero currents (real,
        imaginary), then slack angles. All linear."""
        return self._cjac @ x, self._cjac

    # -- solving --------------------------------------------------------------------------

    def _factor(self, ms: MeasurementSet, jac, cjac) -> _ScaledLU:
        """Sparse LU of the augmented system, symmetrically scaled.

        Measurement rows are divided by their sigma and constraint rows by their largest
        entry (admittances span 1e-3 to 1e7 p.u.); this does not change the solution but
        takes the condition number down by several orders of magnitude.
        """
        n2 = 2 * self.net.n
        w_p = self.settings.prior_weight
        kkt = sp.bmat([[sp.diags(ms.sigma ** 2), jac, None],
                       [jac.T, -w_p * sp.identity(n2), cjac.T],
                       [None, cjac, None]], format="csc")
        row_max = abs(cjac).max(axis=1).toarray().ravel()
        scale = np.concatenate([1.0 / ms.sigma, np.ones(n2), 1.0 / np.where(row_max > 0,
                                                                             row_max, 1.0)])
        d = sp.diags(scale)
        return _ScaledLU(spla.splu((d @ kkt @ d).tocsc()), scale)

    def solve(self, ms: MeasurementSet, x0: np.ndarray | None = None):
        """Gauss-Newton from `x0` (default: the last estimate). Returns (x, lu, iters, ok).

        The factorization is reused while steps keep shrinking fast (a chord iteration):
        near the solution the Jacobian hardly changes, and a solve costs a tenth of a
        factorization. A step that shrank by less than 4x triggers a new factorization.
        """
        x = (self.x if x0 is None else x0).copy()
        n2 = 2 * self.net.n
        w_p = self.settings.prior_weight
        functions = Functions(ms, self.net.n)
        lu, refactor, converged, iterations, last = None, True, False, 0, np.inf
        for iterations in range(1, self.settings.max_iterations + 1):  # noqa: B007
            h, jac = functions.evaluate(x)
            c, cjac = self._constraints(x)
            fresh = refactor
            if fresh:
                lu = self._factor(ms, jac, cjac)
            rhs = np.concatenate([ms.value - h, w_p * (x - self.x_prior), -c])
            dx = lu.solve(rhs)[len(ms):len(ms) + n2]
            x += dx
            step = float(np.max(np.abs(dx)))
            if step < self.settings.tolerance or (fresh and step < 1e-7 and step > 0.5 * last):
                converged = True  # below tolerance, or a Newton step at the rounding floor
                break
            refactor = step > 0.25 * last
            last = step
        return x, lu, iterations, converged

    def estimate(self, ms: MeasurementSet) -> Estimate:
        """Estimate, then remove bad data (chi-square, largest normalized residual)."""
        removed: list[str] = []
        iterations = 0
        while True:
            x, lu, it, converged = self.solve(ms)
            iterations += it
            h, _ = Functions(ms, self.net.n).evaluate(x)
            r = (ms.value - h) / ms.sigma
            objective = float(r @ r)
            dof = len(ms) - (2 * self.net.n - 2 * len(self.net.zero_injection)
                             - len(self.net.slack))
            threshold = float(chi2.ppf(self.settings.chi2_confidence, dof)) if dof > 0 else None
            if len(removed) >= self.settings.max_removals:
                break
            suspect = self._largest_normalized_residual(ms, lu, r, threshold, objective)
            if suspect is None:
                break
            removed.append(ms.label[suspect])
            ms = ms.without({suspect})
        self.x = x
        n = self.net.n
        return Estimate(x[:n] + 1j * x[n:], converged, iterations, objective, dof, threshold,
                        ms, removed, self.unobservable(ms, lu))

    def _largest_normalized_residual(self, ms, lu, r, threshold, objective) -> int | None:
        """The meter to remove, or None when the chi-square test passes or none stands out.

        Normalized residual: |r_i| / sqrt(Omega_ii / sigma_i^2), where the residual
        covariance is Omega = R S11 R and S11 is the measurement block of the KKT inverse.
        Pseudo-measurements are weighed but never removed.
        """
        if threshold is None or objective <= threshold:
            return None
        meters = np.flatnonzero(~ms.pseudo)
        if len(meters) > self.settings.lnr_candidates:
            # Only the largest weighted residuals: r_N >= |r| / sigma, and one gross error
            # stands out among them; computing Omega_ii costs one solve per meter.
            order = np.argsort(-np.abs(r[meters]), kind="stable")
            meters = np.sort(meters[order[: self.settings.lnr_candidates]])
        if not len(meters):
            return None
        size = lu.shape[0]
        unit = np.zeros((size, len(meters)))
        unit[meters, np.arange(len(meters))] = 1.0
        s11 = lu.solve(unit)[meters, np.arange(len(meters))]
        omega_over_var = np.clip(s11 * ms.sigma[meters] ** 2, 1e-12, None)
        lnr = np.abs(r[meters]) / np.sqrt(omega_over_var)
        best = int(np.argmax(lnr))
        return int(meters[best]) if lnr[best] > self.settings.lnr_threshold else None

    def unobservable(self, ms: MeasurementSet, lu) -> np.ndarray:
        """Nodes whose estimate the prior decides: they follow a shift of the prior.

        One solve with the prior shifted by a fixed pattern: an observable node moves by
        about w_p / (its measurement weight), an unobservable one by about the shift.
        """
        n = self.net.n
        shift = np.tile(np.where(np.arange(n) % 2 == 0, 1.0, -1.0), 2)
        rhs = np.zeros(lu.shape[0])
        rhs[len(ms):len(ms) + 2 * n] = -self.settings.prior_weight * shift
        response = lu.solve(rhs)[len(ms):len(ms) + 2 * n]
        influence = np.hypot(response[:n], response[n:]) / np.sqrt(2.0)
        return np.flatnonzero(influence > self.settings.unobservable_influence)
