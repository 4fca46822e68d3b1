"""Three-phase weighted least squares state estimation (pure numerics).

State: the complex voltage of every node in per unit, in rectangular form ``x = [e; f]``.
Each Gauss-Newton step solves the Hachtel augmented system (sparse LU, never the normal
equations, which fail on OpenDSS admittances)::

    [ R    H     0  ] [ lambda ]   [ z - h(x)        ]
    [ H^T  -W_p  C^T] [ dx     ] = [ W_p (x - x_prior) ]
    [ 0    C     0  ] [ mu     ]   [ -c(x)           ]

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
The sigma of each node's |V|, from ``K^-1`` at the solution, is `uncertainty`'s.

``W_p = w_p I`` plus, for each floating island of the network (`Network.floating`: a delta
secondary whose common potential only OpenDSS's anti-float shunts hold), a prior of sigma
``floating_sigma_pu`` on the island's mean voltage (its zero-sequence voltage) toward its
no-load value, about 0. Without it that potential is decided by rounding: IEEE 9500's
480 V DER islands have no ground path but shunts of 2e-7 p.u. next to admittances of 10
p.u., their P and Q pseudo-measurements do not see a common shift when the unit is idle,
and Gauss-Newton moved them by 0.1 to 2 p.u. from one iteration to the next, never
converging. In the power flow their mean voltage is 2e-6 to 7e-5 p.u., 0.017 p.u. on the
island of three microturbines (m2001); |V| meters on an island still move it, weighed
against the prior.

Each step is refined once (``x += K^-1 (rhs - K x)`` with the same factors): on IEEE 9500
(40,600 rows, entries from 6e-9 to 5e6 after scaling) a plain solve stalled at steps of
1e-6 p.u., its rounding floor, and never met the tolerance; one refinement takes that floor
below 1e-9 p.u. for one more solve (1.5 ms there).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy.special import gammaincinv

from gridsim.federates.wls.functions import Functions
from gridsim.federates.wls.measurements import MeasurementSet
from gridsim.federates.wls.uncertainty import VoltageUncertainty
from gridsim.network import Network


class EstimationError(RuntimeError):
    """An estimate failed numerically: a singular augmented system or a non-finite step.

    The estimator has then forgotten its warm start (the next estimate starts from the
    no-load voltages) and the caller should publish no estimate for the step.
    """


@dataclass
class _ScaledLU:
    """LU of ``D K D``; `solve` answers for ``K`` itself."""

    lu: spla.SuperLU
    scale: np.ndarray
    matrix: sp.csc_matrix | None = None
    """``D K D`` itself, for iterative refinement."""

    @property
    def shape(self) -> tuple[int, int]:
        return self.lu.shape

    def solve(self, rhs: np.ndarray, refine: int = 0) -> np.ndarray:
        """``K^-1 rhs`` for a vector or a matrix of columns, refined `refine` times."""
        s = self.scale if rhs.ndim == 1 else self.scale[:, None]
        b = s * rhs
        z = self.lu.solve(b)
        for _ in range(refine if self.matrix is not None else 0):
            z += self.lu.solve(b - self.matrix @ z)
        return s * z


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
    lnr_max_entries: float = 2.5e6
    """...and for at most this many entries of the dense block of unit columns they solve
    (candidates x rows of the augmented system): all of IEEE 123's 110 meters (1,100 rows),
    61 of IEEE 9500's 3,500 (40,600 rows, where a column costs a 1.5 ms solve: 0.1 s per
    bad-data test, against 0.5 s for 200 candidates and 8 to 95 s for all meters)."""
    unobservable_influence: float = 0.5
    floating_sigma_pu: float = 0.01
    """Prior sigma of a floating island's zero-sequence voltage (see the module docstring)."""
    uncertainty: bool = True
    """Compute the sigma of each observable node's |V| (`uncertainty`; converged estimates)."""
    uncertainty_check_nodes: int = 4
    uncertainty_rtol: float = 1e-2
    """The frontal sigmas are checked against solves on this many nodes, to this tolerance
    (relative, on the variance), else solved per node..."""
    uncertainty_max_entries: float = 2.5e7
    """...up to this many entries (rows of the augmented system x nodes): IEEE 123's 0.3
    million, not IEEE 9500's 380 (20 s)."""


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
    vmag_sigma: np.ndarray | None = None
    """Sigma of each state's |V|, p.u. (NaN where unobservable); None when not computed."""


class WLSEstimator:
    """Gauss-Newton WLS on a fixed `Network`; warm-starts from its previous estimate."""

    name = "wls"

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
        self._prior = self._prior_matrix()
        self.uncertainty = VoltageUncertainty(net)

    def _prior_matrix(self) -> sp.csc_matrix:
        """``W_p``: the weak prior on every state, and each floating island's mean voltage
        held near its no-load value with sigma ``floating_sigma_pu``."""
        n = self.net.n
        w = self.settings.prior_weight * sp.identity(2 * n, format="csc")
        if not self.net.floating:
            return w
        rows = [np.full(len(g), i) for i, g in enumerate(self.net.floating)]
        cols = np.concatenate(self.net.floating)
        vals = np.concatenate([np.full(len(g), 1.0 / len(g)) for g in self.net.floating])
        mean = sp.csr_matrix((vals, (np.concatenate(rows), cols)),
                             shape=(len(self.net.floating), n))
        island = (mean.T @ mean) / self.settings.floating_sigma_pu ** 2
        return (w + sp.block_diag([island, island])).tocsc()

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
        kkt = sp.bmat([[sp.diags(ms.sigma ** 2), jac, None],
                       [jac.T, -self._prior, cjac.T],
                       [None, cjac, None]], format="csc")
        row_max = abs(cjac).max(axis=1).toarray().ravel()
        scale = np.concatenate([1.0 / ms.sigma, np.ones(n2), 1.0 / np.where(row_max > 0,
                                                                             row_max, 1.0)])
        d = sp.diags(scale)
        scaled = (d @ kkt @ d).tocsc()
        try:
            return _ScaledLU(spla.splu(scaled), scale, scaled)
        except RuntimeError as exc:  # SuperLU: "Factor is exactly singular"
            raise EstimationError(f"augmented system not factorizable: {exc}") from exc

    def solve(self, ms: MeasurementSet, x0: np.ndarray | None = None):
        """Gauss-Newton from `x0` (default: the last estimate). Returns (x, lu, iters, ok).

        The factorization is reused while steps keep shrinking fast (a chord iteration):
        near the solution the Jacobian hardly changes, and a solve costs a tenth of a
        factorization. A step that shrank by less than 4x triggers a new factorization.
        """
        x = (self.x if x0 is None else x0).copy()
        n2 = 2 * self.net.n
        functions = Functions(ms, self.net.n)
        lu, refactor, converged, iterations, last = None, True, False, 0, np.inf
        for iterations in range(1, self.settings.max_iterations + 1):  # noqa: B007
            h, jac = functions.evaluate(x)
            c, cjac = self._constraints(x)
            fresh = refactor
            if fresh:
                lu = self._factor(ms, jac, cjac)
            rhs = np.concatenate([ms.value - h, self._prior @ (x - self.x_prior), -c])
            dx = lu.solve(rhs, refine=1)[len(ms):len(ms) + n2]
            if not np.all(np.isfinite(dx)):
                raise EstimationError(f"non-finite Gauss-Newton step at iteration {iterations}")
            x += dx
            step = float(np.max(np.abs(dx)))
            if step < self.settings.tolerance or (fresh and step < 1e-7 and step > 0.5 * last):
                converged = True  # below tolerance, or a Newton step at the rounding floor
                break
            refactor = step > 0.25 * last
            last = step
        return x, lu, iterations, converged

    def estimate(self, ms: MeasurementSet) -> Estimate:
        """Estimate, then remove bad data (chi-square, largest normalized residual).

        Bad data is looked for only in a converged estimate. The next estimate starts from
        this one if it converged, else from the no-load voltages, so that one bad step does
        not poison the next. Raises `EstimationError` on a numerical failure (after the same
        reset).
        """
        try:
            return self._estimate(ms)
        except EstimationError:
            self.x = self.x_prior.copy()
            raise

    def _estimate(self, ms: MeasurementSet) -> Estimate:
        removed: list[str] = []
        iterations = 0
        while True:
            x, lu, it, converged = self.solve(ms)
            iterations += it
            h, jac = Functions(ms, self.net.n).evaluate(x)
            r = (ms.value - h) / ms.sigma
            objective = float(r @ r)
            dof = len(ms) - (2 * self.net.n - 2 * len(self.net.zero_injection)
                             - len(self.net.slack))
            threshold = chi2_quantile(self.settings.chi2_confidence, dof) if dof > 0 else None
            if not converged or len(removed) >= self.settings.max_removals:
                break  # normalized residuals of an unconverged state would name any meter
            suspect = self._largest_normalized_residual(ms, lu, r, threshold, objective)
            if suspect is None:
                break
            removed.append(ms.label[suspect])
            ms = ms.without({suspect})
        self.x = x if converged else self.x_prior.copy()
        n = self.net.n
        unobservable = self.unobservable(ms, lu)
        sigma = self.uncertainty.of_estimate(self, ms, lu, jac, x, unobservable) \
            if converged and self.settings.uncertainty else None
        return Estimate(x[:n] + 1j * x[n:], converged, iterations, objective, dof, threshold,
                        ms, removed, unobservable, sigma)

    def _largest_normalized_residual(self, ms, lu, r, threshold, objective) -> int | None:
        """The meter to remove, or None when the chi-square test passes or none stands out.

        Normalized residual: |r_i| / sqrt(Omega_ii / sigma_i^2), where the residual
        covariance is Omega = R S11 R and S11 is the measurement block of the KKT inverse.
        Pseudo-measurements are weighed but never removed.
        """
        if threshold is None or objective <= threshold:
            return None
        meters = np.flatnonzero(~ms.pseudo)
        size = lu.shape[0]
        candidates = max(1, min(self.settings.lnr_candidates,
                                int(self.settings.lnr_max_entries // size)))
        if len(meters) > candidates:
            # Only the largest weighted residuals: r_N >= |r| / sigma, and one gross error
            # stands out among them; computing Omega_ii costs one solve per meter.
            order = np.argsort(-np.abs(r[meters]), kind="stable")
            meters = np.sort(meters[order[:candidates]])
        if not len(meters):
            return None
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


def chi2_quantile(confidence: float, dof: int) -> float:
    """``scipy.stats.chi2.ppf(confidence, dof)``, by the same formula, without importing
    scipy.stats (0.35 s of start-up)."""
    return float(2.0 * gammaincinv(dof / 2.0, confidence))
