"""gridsim's federates, one folder each: a ``component_definition.json`` and its code.

Each federate folder holds pure numerics (no HELICS) in their own modules, an ``adapter.py``
that turns messages into the numerics' inputs and results back into messages (no HELICS
either), a thin ``federate.py`` loop over `gridsim.loop.Runtime` that reads inputs, calls
them and publishes, and ``__main__.py``, the process entry (``python -m
gridsim.federates.NAME SYSTEM NAME``), the one place besides `gridsim.runtime` that loads
HELICS. Importing this package has no side effects.
"""
