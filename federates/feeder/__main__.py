"""``python -m gridsim.federates.feeder SYSTEM NAME``: run the feeder federate."""

import sys

from gridsim.federates.feeder.federate import run
from gridsim.runtime import main

sys.exit(main(run))
