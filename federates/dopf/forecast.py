"""The operating point the DOPF's setpoints will meet: the next step, not the present one.

Setpoints decided at step k act at step k + 1, so the problem is moved, with the same
linear model, from the estimate of step k to what step k + 1 is expected to be:

- PV availability (`pv_availability`): the last change continued once (``trend``);
- loads under caps another federate has published for step k + 1 (`planned_load_drop`):
  the market clears a shortage and caps every load from its first step. Without this, the
  first capped step (loads dropping by half, voltages rising) came as a surprise and went
  over the limit, even with the true voltages.

And the estimate itself (`estimated_voltages`): nodes it does not cover are named, never
filled silently.
"""

from __future__ import annotations

import numpy as np

from gridsim import messages as m
from gridsim.network import Network

DROP_EPS_KW = 1e-6
"""A planned change smaller than this is no change (no column for it)."""


def pv_availability(pv: m.PVStates, previous: m.PVStates | None,
                    method: str) -> np.ndarray | None:
    """PV availability expected at the next step, when the setpoints apply (kW).

    ``"trend"``: the last step's change continued once, kept within [0, 2 x now] (a morning
    ramp gains about 0.0035 p.u. per step on the DOPF scenario, which a controller acting
    on the present alone lets through for hours). ``"none"``: availability stays as it is
    (returns None).
    """
    if method == "none" or previous is None or list(previous.ids) != list(pv.ids):
        return None
    now = np.asarray(pv.available_kw)
    return np.clip(2.0 * now - np.asarray(previous.available_kw), 0.0, 2.0 * now)


def planned_load_drop(loads: m.LoadStates, planned: m.LoadCaps | None) -> dict[str, float]:
    """kW each load will draw less at the next step than now, under the planned caps
    (negative: more, e.g. a cap lifted), for the loads whose cap changes.

    Demand is taken as now (persistence): an uncapped load would go on drawing what it
    draws, a capped one its demand. A planned cap ``c`` makes it draw the lesser of that and
    ``c``; a lifted cap, that alone. A load whose planned cap is the one in force (the plan
    is republished every step of a shortage) does not change.
    """
    if planned is None:
        return {}
    plan = dict(zip(planned.ids, planned.cap_kw))
    out = {}
    for load, now, demand, cap_now in zip(loads.ids, loads.p_kw, loads.demand_kw,
                                          loads.cap_kw):
        if load not in plan or plan[load] == cap_now:
            continue
        uncapped = now if cap_now is None else demand
        cap = plan[load]
        drop = now - (uncapped if cap is None else min(uncapped, cap))
        if abs(drop) > DROP_EPS_KW:
            out[load] = float(drop)
    return out


def estimated_voltages(net: Network, magnitude: m.VoltagesMagnitude,
                       angle: m.VoltagesAngle) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Complex node voltages (p.u.) from the estimate, with the one-sigma accuracy of each
    |V| (0 where the estimate gives none), and the nodes the estimate lacks.

    A node the estimate lacks (unobservable, or not estimated) takes its no-load voltage, so
    that the model can still be linearized; the DOPF neither limits it nor hides it: the
    diagnostics name it.
    """
    v = net.v_start[net.state_of].copy()
    sigma = np.zeros(len(v))
    angles = dict(zip(angle.ids, angle.values))
    accuracy = magnitude.accuracy or [0.0] * len(magnitude.ids)
    seen = np.zeros(len(v), dtype=bool)
    for node, mag, acc in zip(magnitude.ids, magnitude.values, accuracy):
        i = net.index.get(node)
        if i is not None and node in angles:
            v[i] = mag * np.exp(1j * np.radians(angles[node]))
            sigma[i] = acc if acc is not None and np.isfinite(acc) else 0.0
            seen[i] = True
    missing = [node for node, i in net.index.items() if not seen[i]]
    return v, sigma, missing
