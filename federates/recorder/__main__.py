"""``python -m gridsim.federates.recorder SYSTEM NAME``: run the recorder federate."""

import sys

from gridsim.federates.recorder.federate import run
from gridsim.runtime import main

sys.exit(main(run))
