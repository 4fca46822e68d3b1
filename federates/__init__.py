"""gridsim's federates, one folder each: a ``component_definition.json`` and its code.

Each federate folder holds pure numerics (no HELICS) in its own modules and a thin
``federate.py`` loop that reads inputs, calls them and publishes outputs; ``__main__.py``
makes it runnable as ``python -m gridsim.federates.<name> SYSTEM NAME``.
"""

# HELICS must load before SciPy's compiled modules: with scipy.linalg (or scipy.special,
# scipy.stats, ...) loaded first, creating a federate from a JSON configuration fails with
# "--brokerport: Value  not in range" (measured with helics 3.6.1 and scipy 1.17). Every
# federate module is imported through this package, so loading HELICS here settles it.
import helics  # noqa: E402, F401
