"""``python -m gridsim.federates.dopf SYSTEM NAME``: run the DOPF federate."""

from gridsim import runtime  # first: HELICS must load before anything loads SciPy
from gridsim.federates.dopf.federate import run

runtime.run_and_exit(run)
