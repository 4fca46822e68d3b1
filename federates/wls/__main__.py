"""``python -m gridsim.federates.wls SYSTEM NAME``: run the WLS estimator federate."""

from gridsim import runtime  # first: HELICS must load before anything loads SciPy
from gridsim.federates.wls.federate import run

runtime.run_and_exit(run)
