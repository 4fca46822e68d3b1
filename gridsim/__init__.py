"""gridsim: HELICS co-simulation of power distribution grids.

The core package holds what every federate and the command line share: the message schema
(`gridsim.messages`), component definitions (`gridsim.components`), scenarios and their
validation (`gridsim.scenario`, `gridsim.wiring`), the build of HELICS configurations
(`gridsim.build`), the run supervisor (`gridsim.supervisor`) and the federate-side runtime
(`gridsim.runtime`). Federates live in `gridsim.federates` (folder `federates/`), the command
line in `gridsim.cli` (folder `cli/`), bundled feeders in `gridsim.feeders` (folder `feeders/`).
"""

__version__ = "0.1.0"
