"""``python -m gridsim.federates.market SYSTEM NAME``: run the market federate."""

from gridsim.federates.market.federate import run
from gridsim.runtime import run_and_exit

run_and_exit(run)
