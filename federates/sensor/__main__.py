"""``python -m gridsim.federates.sensor SYSTEM NAME``: run the sensor federate."""

from gridsim.federates.sensor.federate import run
from gridsim.runtime import run_and_exit

run_and_exit(run)
