"""State estimators by name, and what the estimator federate and the kit need from one.

An estimator is built on a fixed network model (`gridsim.network.Network`) with `Settings`
and estimates one step's `MeasurementSet` at a time, returning an `Estimate` (voltages, and
the figures of the bad-data test: objective, degrees of freedom, chi-square threshold,
removed meters). Every estimator here is held to `gridsim.federates.wls.conformance`.
"""

from __future__ import annotations

from typing import Protocol

from gridsim.federates.wls.estimator import Estimate, Settings, WLSEstimator
from gridsim.federates.wls.measurements import MeasurementSet
from gridsim.network import Network

__all__ = ["ESTIMATORS", "Estimator", "make"]


class Estimator(Protocol):
    """What the estimator federate and the conformance kit need from an estimator."""

    name: str

    def __init__(self, net: Network, settings: Settings | None = None) -> None: ...

    def estimate(self, ms: MeasurementSet) -> Estimate:
        """Estimate one step; raises `estimator.EstimationError` on a numerical failure."""
        ...


ESTIMATORS: dict[str, type] = {cls.name: cls for cls in (WLSEstimator,)}
"""Estimator classes by name: ``"wls"``."""


def make(name: str, net: Network, settings: Settings | None = None) -> Estimator:
    """An estimator by name on `net`; the error lists the known names."""
    if name not in ESTIMATORS:
        raise ValueError(f"unknown estimator {name!r}; known: {', '.join(sorted(ESTIMATORS))}")
    return ESTIMATORS[name](net, settings)
