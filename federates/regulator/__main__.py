"""``python -m gridsim.federates.regulator SYSTEM NAME``: run the regulator federate."""

from gridsim import runtime  # first: HELICS must load before anything loads SciPy
from gridsim.federates.regulator.federate import run

runtime.run_and_exit(run)
