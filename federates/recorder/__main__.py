"""``python -m gridsim.federates.recorder SYSTEM NAME``: run the recorder federate."""

from gridsim.federates.recorder.federate import run
from gridsim.runtime import run_and_exit

run_and_exit(run)
