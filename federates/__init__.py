"""gridsim's federates, one folder each: a ``component_definition.json`` and its code.

Each federate folder holds pure numerics (no HELICS) in its own modules and a thin
``federate.py`` loop that reads inputs, calls them and publishes outputs; ``__main__.py``
makes it runnable as ``python -m gridsim.federates.<name> SYSTEM NAME``.
"""
