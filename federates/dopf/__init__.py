"""Distribution optimal power flow (DOPF): problem, algorithms, linear model and federate.

- `problem`: the DOPF as plain arrays (`DOPFProblem`), its standard form, random instances;
- `central`: the reference, an off-the-shelf QP solver (CLARABEL or OSQP) on the scaled problem;
- `primal_dual`: the distributed projected primal-dual gradient method of the seed paper;
- `algorithms`: the registry of algorithms by name (``"central"``, ``"primal-dual"``).
"""
