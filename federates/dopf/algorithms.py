"""The DOPF algorithms by name and their common protocol.

Every algorithm is a class with a ``name`` and ``solve(problem, warm_start=None)`` returning
a `Solution`; a solver in trouble gives a status, never an exception. Look one up with
``ALGORITHMS["central"]()`` or `make`.
"""

from __future__ import annotations

from typing import Protocol

from gridsim.federates.dopf.central import CentralDOPF
from gridsim.federates.dopf.primal_dual import PrimalDualDOPF
from gridsim.federates.dopf.problem import DOPFProblem, Solution, Status

__all__ = ["ALGORITHMS", "Algorithm", "Solution", "Status", "make"]


class Algorithm(Protocol):
    """What the DOPF federate and the conformance kit need from an algorithm."""

    name: str

    def solve(self, problem: DOPFProblem, warm_start: Solution | None = None) -> Solution:
        """Solve `problem`, optionally starting from a previous solution of the same shape."""
        ...


ALGORITHMS: dict[str, type] = {cls.name: cls for cls in (CentralDOPF, PrimalDualDOPF)}
"""Algorithm classes by name: ``"central"``, ``"primal-dual"``."""


def make(name: str, **settings) -> Algorithm:
    """An algorithm by name, with its settings; the error lists the known names."""
    if name not in ALGORITHMS:
        raise ValueError(f"unknown DOPF algorithm {name!r}; known: "
                         f"{', '.join(sorted(ALGORITHMS))}")
    return ALGORITHMS[name](**settings)
