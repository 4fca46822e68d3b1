"""``python -m gridsim.federates.truth SYSTEM NAME``: run the truth estimator federate."""

from gridsim import runtime  # first: HELICS must load before anything loads SciPy
from gridsim.federates.truth.federate import run

runtime.run_and_exit(run)
