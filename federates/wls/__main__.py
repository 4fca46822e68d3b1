"""``python -m gridsim.federates.wls SYSTEM NAME``: run the WLS estimator federate."""

from gridsim.federates.wls.federate import run
from gridsim.runtime import run_and_exit

run_and_exit(run)
