"""``python -m gridsim.federates.auditor SYSTEM NAME``: run the auditor federate."""

from gridsim.federates.auditor.federate import run
from gridsim.runtime import run_and_exit

run_and_exit(run)
