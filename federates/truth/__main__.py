"""``python -m gridsim.federates.truth SYSTEM NAME``: run the truth estimator federate."""

from gridsim.federates.truth.federate import run
from gridsim.runtime import run_and_exit

run_and_exit(run)
