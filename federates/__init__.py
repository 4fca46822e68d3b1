"""gridsim's federates, one folder each: a ``component_definition.json`` and its code.

Each federate folder holds pure numerics (no HELICS) in its own modules and a thin
``federate.py`` loop that reads inputs, calls them and publishes outputs; ``__main__.py``
makes it runnable as ``python -m gridsim.federates.<name> SYSTEM NAME``.
"""

import os

# One BLAS thread per federate process: every federate is its own process, and on a
# 2-core machine OpenBLAS's thread pool turned SuperLU's multi-column solves (the DOPF's
# sensitivities, the estimator's normalized residuals) from 3-10 ms into 260-415 ms. Set
# before NumPy loads; a user's own setting wins.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

# HELICS must load before SciPy's compiled modules: with scipy.linalg (or scipy.special,
# scipy.stats, ...) loaded first, creating a federate from a JSON configuration fails with
# "--brokerport: Value  not in range" (measured with helics 3.6.1 and scipy 1.17). Every
# federate module is imported through this package, so loading HELICS here settles it.
import helics  # noqa: E402, F401
