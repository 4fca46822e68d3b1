"""Scoring an estimate against the truth: per-step errors and their run summary.

Used by every estimator federate when the feeder's true voltages are linked to it (for
scoring only: no estimator reads them to estimate). Magnitudes in p.u., angles in degrees
(differences wrapped to [-180, 180)).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Score:
    """Accumulates estimation errors over a run."""

    mean_v: list[float] = field(default_factory=list)
    max_v: list[float] = field(default_factory=list)
    mean_angle: list[float] = field(default_factory=list)

    def add(self, est: dict[str, tuple[float, float]], true: dict[str, tuple[float, float]]):
        """One step: node -> (|V| p.u., angle deg), estimated and true; common nodes count."""
        common = sorted(set(est) & set(true))
        if not common:
            return
        e = np.array([est[n] for n in common])
        t = np.array([true[n] for n in common])
        dv = np.abs(e[:, 0] - t[:, 0])
        da = np.abs((e[:, 1] - t[:, 1] + 180.0) % 360.0 - 180.0)
        self.mean_v.append(float(dv.mean()))
        self.max_v.append(float(dv.max()))
        self.mean_angle.append(float(da.mean()))

    def summary(self) -> dict:
        """Run figures: mean and max |V| error (p.u.), mean angle error (deg), steps scored."""
        if not self.mean_v:
            return {"scored_steps": 0}
        return {"scored_steps": len(self.mean_v),
                "v_error_mean_pu": float(np.mean(self.mean_v)),
                "v_error_max_pu": float(np.max(self.max_v)),
                "angle_error_mean_deg": float(np.mean(self.mean_angle)),
                "v_error_mean_pu_per_step": self.mean_v}


def phasors(magnitude, angle) -> dict[str, tuple[float, float]]:
    """node -> (|V|, angle) from a VoltagesMagnitude and a VoltagesAngle message."""
    angles = dict(zip(angle.ids, angle.values))
    return {n: (v, angles[n]) for n, v in zip(magnitude.ids, magnitude.values) if n in angles}
