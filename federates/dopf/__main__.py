"""``python -m gridsim.federates.dopf SYSTEM NAME``: run the DOPF federate."""

from gridsim.federates.dopf.federate import run
from gridsim.runtime import run_and_exit

run_and_exit(run)
