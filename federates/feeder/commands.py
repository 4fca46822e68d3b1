"""Control commands to the feeder: checked one by one, applied to OpenDSS, or rejected.

Each function takes the ids-aligned arrays of one command message and returns
``(accepted, rejected)``; a rejected command carries the reason, for the feeder's
``command_report``. Nothing here raises on bad input from another federate: unknown names,
non-finite numbers and out-of-range values are rejected, the rest applied.

Semantics (the same as in `gridsim.messages`):
- PV: ``p_max_kw`` limits output (OpenDSS ``%Pmpp``); a value at or above Pmpp lifts the
  limit; None leaves the limit as it is. ``q_kvar`` fixes reactive output within the
  inverter's kVA rating; None leaves it as it is.
- Load caps bound what a load draws (kW); None removes the cap. `LoadCapper` enforces them.
- Capacitors: 1 closes every step, 0 opens; any capacitor control of the bank is disabled.
- Taps: positions from neutral; the regulator's automatic control is disabled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import opendssdirect as dss


@dataclass
class Rejected:
    """A command that could not be applied."""

    port: str
    name: str
    reason: str


def _finite(value) -> bool:
    return value is None or (isinstance(value, (int, float)) and math.isfinite(value))


def set_pv(port: str, ids, p_max_kw, q_kvar) -> tuple[int, list[Rejected]]:
    """Curtailment limits and reactive setpoints for PV systems."""
    known = {n.lower() for n in dss.PVsystems.AllNames()}
    accepted, rejected = 0, []
    for name, p_max, q in zip(ids, p_max_kw, q_kvar):
        if name.lower() not in known:
            rejected.append(Rejected(port, name, "no such PV system"))
            continue
        if not (_finite(p_max) and _finite(q)):
            rejected.append(Rejected(port, name, "not a finite number"))
            continue
        dss.PVsystems.Name(name)
        pmpp, rating = dss.PVsystems.Pmpp(), dss.PVsystems.kVARated()
        if p_max is not None and p_max < 0:
            rejected.append(Rejected(port, name, f"negative limit {p_max} kW"))
        elif q is not None and abs(q) > rating:
            rejected.append(Rejected(port, name, f"{q} kvar exceeds the {rating} kVA rating"))
        else:
            if p_max is not None:
                pct = 100.0 * min(p_max, pmpp) / pmpp
                dss.Text.Command(f"PVSystem.{name}.%Pmpp={pct!r}")
            if q is not None:
                dss.PVsystems.kvar(q)
            accepted += 1
    return accepted, rejected


def set_capacitors(port: str, ids, states) -> tuple[int, list[Rejected]]:
    """Open (0) or close (1) capacitor banks; their controls, if any, are disabled."""
    known = {n.lower() for n in dss.Capacitors.AllNames()}
    controls = {}
    for ctrl in dss.CapControls.AllNames():
        dss.CapControls.Name(ctrl)
        controls.setdefault(dss.CapControls.Capacitor().lower(), []).append(ctrl)
    accepted, rejected = 0, []
    for name, state in zip(ids, states):
        if name.lower() not in known:
            rejected.append(Rejected(port, name, "no such capacitor"))
        elif state not in (0, 1):
            rejected.append(Rejected(port, name, f"state {state} is neither 0 nor 1"))
        else:
            for ctrl in controls.get(name.lower(), []):
                dss.Text.Command(f"CapControl.{ctrl}.enabled=no")
            dss.Capacitors.Name(name)
            dss.Capacitors.States([state] * dss.Capacitors.NumSteps())
            accepted += 1
    return accepted, rejected


def tap_range(transformer: str) -> tuple[float, float, int]:
    """(neutral ratio, ratio per step, steps either side) of a regulated transformer."""
    dss.Transformers.Name(transformer)
    dss.Transformers.Wdg(2)
    low, high, n = dss.Transformers.MinTap(), dss.Transformers.MaxTap(), dss.Transformers.NumTaps()
    return 1.0, (high - low) / n, n // 2


def set_taps(port: str, ids, taps, transformers: dict[str, str]) -> tuple[int, list[Rejected]]:
    """Move regulators (by control name) to tap positions; their control is disabled.

    `transformers` maps each regulator control to the transformer it drives.
    """
    accepted, rejected = 0, []
    for name, tap in zip(ids, taps):
        transformer = transformers.get(name.lower())
        if transformer is None:
            rejected.append(Rejected(port, name, "no such regulator control"))
            continue
        neutral, step, half = tap_range(transformer)
        if not -half <= tap <= half:
            rejected.append(Rejected(port, name, f"tap {tap} outside [{-half}, {half}]"))
            continue
        dss.Text.Command(f"RegControl.{name}.enabled=no")
        dss.Transformers.Name(transformer)
        dss.Transformers.Wdg(2)
        dss.Transformers.Tap(neutral + tap * step)
        accepted += 1
    return accepted, rejected


class LoadCapper:
    """Keeps capped loads at or below their caps (kW drawn, not nominal).

    Before a solve each capped load's nominal kW is set so that base x shape multiplier
    would equal the cap; voltage-dependent loads (constant Z or I) then draw more or less
    than nominal, so after the solve each capped load is rescaled (`off_cap`) and the step
    re-solved, up to `max_rounds` times, until every capped load draws what it would draw
    without the cap, or its cap, whichever is less, within `tolerance` (relative).
    """

    def __init__(self, base_kw: dict[str, float], tolerance: float = 1e-4, max_rounds: int = 5):
        self.base_kw = base_kw
        self.caps: dict[str, float] = {}
        """The cap in force on each capped load: the least of its sources' caps."""
        self._by_source: dict[str, dict[str, float]] = {}
        self.tolerance = tolerance
        self.max_rounds = max_rounds
        self._modified: set[str] = set()

    def set_caps(self, port: str, ids, caps, source: str = "") -> tuple[int, list[Rejected]]:
        """Caps (kW) on load consumption from one `source` (a link: the market, the DOPF);
        None removes that source's cap. The cap in force is the least of every source's
        (the ``combine: min`` of the feeder's ``load_caps`` input). Applied at the next
        solve."""
        own = self._by_source.setdefault(source, {})
        accepted, rejected = 0, []
        for name, cap in zip(ids, caps):
            key = name.lower()
            if key not in self.base_kw:
                rejected.append(Rejected(port, name, "no such load"))
            elif not _finite(cap):
                rejected.append(Rejected(port, name, "not a finite number"))
            elif cap is not None and cap < 0:
                rejected.append(Rejected(port, name, f"negative cap {cap} kW"))
            else:
                if cap is None:
                    own.pop(key, None)
                else:
                    own[key] = float(cap)
                self._combine(key)
                accepted += 1
        return accepted, rejected

    def _combine(self, load: str) -> None:
        caps = [own[load] for own in self._by_source.values() if load in own]
        if caps:
            self.caps[load] = min(caps)
        else:
            self.caps.pop(load, None)

    def prepare(self, multiplier) -> None:
        """Set nominal kW for the coming solve; `multiplier(load)` is its shape x loadmult."""
        for name in sorted(set(self.caps) | self._modified):
            base, cap = self.base_kw[name], self.caps.get(name)
            mult = multiplier(name)
            want = base if cap is None or base * mult <= cap else cap / mult
            dss.Loads.Name(name)
            dss.Loads.kW(want)
            if want == base:
                self._modified.discard(name)
            else:
                self._modified.add(name)

    def off_cap(self, multiplier) -> dict[str, float]:
        """Nominal kW for the capped loads that must be re-solved: name -> new kW.

        A load drawing more than cap x (1 + tolerance) is scaled down by its excess; one
        drawing less than cap x (1 - tolerance) whose nominal the cap had lowered is scaled
        up by its shortfall, to at most its uncapped nominal (base x `multiplier`): a
        voltage-dependent load then draws min(what it would draw, cap), not less.
        """
        out = {}
        for name, cap in self.caps.items():
            dss.Loads.Name(name)
            drawn, nominal = sum(dss.CktElement.Powers()[0::2]), dss.Loads.kW()
            uncapped = self.base_kw[name] * multiplier(name)
            if drawn > cap * (1 + self.tolerance) and drawn > 0:
                out[name] = nominal * cap / drawn
            elif drawn < cap * (1 - self.tolerance) and nominal < uncapped * (1 - 1e-12):
                out[name] = min(nominal * cap / drawn if drawn > 0 else uncapped, uncapped)
        return out

    def rescale(self, nominal_kw: dict[str, float]) -> None:
        """Set the nominal kW `off_cap` found."""
        for name, kw in nominal_kw.items():
            dss.Loads.Name(name)
            dss.Loads.kW(kw)
            self._modified.add(name)
