"""gridsim: HELICS co-simulation of power distribution grids.

The core package holds what every federate and the command line share: the message schema
(`gridsim.messages`), component definitions (`gridsim.components`), scenarios and their
validation (`gridsim.scenario`, `gridsim.wiring`), the build of HELICS configurations
(`gridsim.build`), the run supervisor (`gridsim.supervisor`), what a federate's loop sees
(`gridsim.loop`) and its runtimes (`gridsim.runtime` over HELICS, `gridsim.fake_runtime` in
process), and the market's contracts with the auditor (`gridsim.contracts`). It imports no
federate (docs/architecture.md, "Import rules"). Federates live in `gridsim.federates` (folder
`federates/`), the command line in `gridsim.cli` (folder `cli/`), bundled feeders in
`gridsim.feeders` (folder `feeders/`).
"""

__version__ = "0.1.0"
