"""Random DOPF instances for the conformance kit and the benchmarks (pure numerics).

`random_instance` draws a physically plausible instance, feasible by construction;
`perturb` changes one the way a step changes the next.
"""

from __future__ import annotations

import numpy as np

from gridsim.federates.dopf.problem import DOPFProblem


def random_instance(rng: np.random.Generator, n_node: int, n_pv: int, n_load: int, *,
                    substation: bool | None = None) -> DOPFProblem:
    """A physically plausible random instance, feasible by construction.

    A random radial feeder (each node hangs off one of the 8 nodes created before it)
    gives LinDistFlow sensitivities: the effect of an injection at ``j`` on ``|V|`` at ``i``
    is the resistance (``Vp``, ``Vs``) or reactance (``Vq``, x/r 0.5-1.5) of the path the
    two share from the substation, so every entry is positive and falls with electrical
    distance; the deepest node sees 3e-5 to 8e-5 p.u. per kW. PV: 100-500 kW, 72-100% of
    it available, inverters oversized 0-8%; light (midday) loads of 5-30 kW, 10-50%
    sheddable. ``v0`` is a substation voltage of 1.0-1.04 p.u. plus the rise from the
    injections; its maximum is 1.03-1.095 p.u. for 80% of the instances. Of 100 instances
    of IEEE 123's size (seeds 2024 and 7), 74-82 need action; 20-26 curtail, the others
    absorb reactive power or shed (11-12). With ``substation`` (None: half of them) an import
    limit is set, binding in 12 of 40-45. `_make_feasible` makes a witness point feasible,
    so an optimum exists (1,000 of 1,000 instances of seed 99 solved).
    """
    parent = np.array([-1] + [int(rng.integers(max(0, i - 8), i)) for i in range(1, n_node)])
    path = np.eye(n_node)
    for i in range(1, n_node):
        path[i, :i] = path[parent[i], :i]
    r = rng.uniform(0.5, 1.5, n_node)
    r *= rng.uniform(3e-5, 8e-5) / (path @ r).max()
    x = r * rng.uniform(0.5, 1.5, n_node)
    resistance, reactance = (path * r) @ path.T, (path * x) @ path.T
    pv_at = rng.choice(n_node, n_pv, replace=False)
    load_at = rng.choice(n_node, n_load, replace=n_load > n_node)
    rating = rng.uniform(100, 500, n_pv)
    available = rating * rng.uniform(0.8, 1.0) * rng.uniform(0.9, 1.0, n_pv)
    kva = rating * rng.uniform(1.0, 1.08, n_pv)
    q0 = np.sqrt(np.clip(kva**2 - available**2, 0.0, None)) * rng.uniform(-0.2, 0.2, n_pv)
    load = rng.uniform(5, 30, n_load)
    vp, vq, vs = resistance[:, pv_at], reactance[:, pv_at], resistance[:, load_at]
    v0 = vp @ available + vq @ q0 - vs @ load - reactance[:, load_at] @ (0.3 * load)
    loss_pv, loss_q, loss_load = (rng.uniform(-0.05, 0.05, k) for k in (n_pv, n_pv, n_load))
    problem = DOPFProblem(
        v0_pu=v0 + rng.uniform(1.0, 1.04), vp_pu_per_kw=vp, vq_pu_per_kvar=vq,
        vs_pu_per_kw=vs, available_kw=available, kva_rating=kva, q0_kvar=q0,
        shed_max_kw=load * rng.uniform(0.1, 0.5, n_load),
        p_sub0_kw=float(load.sum() - available.sum()), ps_p_kw_per_kw=-1.0 + loss_pv,
        ps_q_kw_per_kvar=loss_q, ps_s_kw_per_kw=-1.0 + loss_load,
        loss=0.1 * np.concatenate([-loss_pv, loss_q, loss_load]))
    return _make_feasible(problem, rng, rng.random() < 0.5 if substation is None else substation)


def _make_feasible(problem: DOPFProblem, rng: np.random.Generator,
                   substation: bool) -> DOPFProblem:
    """Make a witness point feasible with a margin of 0.002 p.u., moving ``v0`` (the
    substation regulator) only if needed, and as little as possible.

    Witnesses: ``lambda`` times the full correction (all PV curtailed and absorbing at
    their limit) for ``lambda`` in [0, 1], plus, with a substation limit, shedding 0-50%
    of the sheddable load; the limit is then the witness's import plus 0-2% of the
    sheddable load.
    """
    sf, n_pv = problem.standard_form, problem.n_pv
    shed = sf.hi[2 * n_pv:] * (rng.uniform(0.0, 0.5) if substation else 0.0)
    start = np.concatenate([np.zeros(n_pv), problem.q0_kvar, shed])
    full = np.concatenate([sf.hi[:n_pv], sf.lo[n_pv:2 * n_pv], shed])
    lam = np.linspace(0.0, 1.0, 101)[:, None]
    witnesses = start + lam * (full - start)
    v = np.array([problem.voltages_pu(w) for w in witnesses])
    margin = 0.002
    low = np.max(problem.v_min_pu + margin - v, axis=1)
    high = np.min(problem.v_max_pu - margin - v, axis=1)
    shifts = np.where(low <= high, np.clip(0.0, low, high), np.inf)
    best = int(np.argmin(np.abs(shifts))) if np.isfinite(shifts).any() else len(lam) - 1
    shift = float(shifts[best]) if np.isfinite(shifts[best]) else float(high[best])
    changes: dict = {"v0_pu": problem.v0_pu + shift}
    if substation:
        curt, q, shed = problem.split(witnesses[best])
        p_sub = (problem.p_sub0_kw - problem.ps_p_kw_per_kw @ curt
                 + problem.ps_q_kw_per_kvar @ (q - problem.q0_kvar)
                 + problem.ps_s_kw_per_kw @ shed)
        changes["p_sub_max_kw"] = float(p_sub + rng.uniform(0.0, 0.02) * sf.hi[2 * n_pv:].sum())
    return problem.replace(**changes)


def perturb(problem: DOPFProblem, rng: np.random.Generator, size: float = 0.1) -> DOPFProblem:
    """The instance after random changes of PV availability and load (about ``size``).

    PV availability changes by up to ``size`` of itself; each load by up to 3 ``size``
    times its flexible part (the problem does not know the full load). ``v0`` and the
    substation import move by the sensitivities, so the instance stays consistent; it can
    occasionally become infeasible.
    """
    d_pv = problem.available_kw * rng.uniform(-size, size, problem.n_pv)
    d_load = 3.0 * problem.shed_max_kw * rng.uniform(-size, size, problem.n_load)
    changes: dict = {
        "available_kw": problem.available_kw + d_pv,
        "v0_pu": problem.v0_pu + problem.vp_pu_per_kw @ d_pv - problem.vs_pu_per_kw @ d_load,
    }
    if problem.ps_p_kw_per_kw is not None:
        changes["p_sub0_kw"] = float(problem.p_sub0_kw + problem.ps_p_kw_per_kw @ d_pv
                                     - problem.ps_s_kw_per_kw @ d_load)
    return problem.replace(**changes)
