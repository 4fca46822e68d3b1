"""``python -m gridsim.federates.feeder SYSTEM NAME``: run the feeder federate."""

from gridsim import runtime  # first: HELICS must load before anything loads SciPy
from gridsim.federates.feeder.federate import run

runtime.run_and_exit(run)
