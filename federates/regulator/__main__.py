"""``python -m gridsim.federates.regulator SYSTEM NAME``: run the regulator federate."""

from gridsim.federates.regulator.federate import run
from gridsim.runtime import run_and_exit

run_and_exit(run)
