"""``python -m gridsim.federates.auditor SYSTEM NAME``: run the auditor federate."""

from gridsim import runtime  # first: HELICS must load before anything loads SciPy
from gridsim.federates.auditor.federate import run

runtime.run_and_exit(run)
