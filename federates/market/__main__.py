"""``python -m gridsim.federates.market SYSTEM NAME``: run the market federate."""

from gridsim import runtime  # first: HELICS must load before anything loads SciPy
from gridsim.federates.market.federate import run

runtime.run_and_exit(run)
