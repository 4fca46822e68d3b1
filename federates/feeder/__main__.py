"""``python -m gridsim.federates.feeder SYSTEM NAME``: run the feeder federate."""

from gridsim.federates.feeder.federate import run
from gridsim.runtime import run_and_exit

run_and_exit(run)
