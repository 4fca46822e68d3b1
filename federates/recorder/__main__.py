"""``python -m gridsim.federates.recorder SYSTEM NAME``: run the recorder federate."""

from gridsim import runtime  # first: HELICS must load before anything loads SciPy
from gridsim.federates.recorder.federate import run

runtime.run_and_exit(run)
