"""``python -m gridsim.federates.sensor SYSTEM NAME``: run the sensor federate."""

from gridsim import runtime  # first: HELICS must load before anything loads SciPy
from gridsim.federates.sensor.federate import run

runtime.run_and_exit(run)
