"""The `wls` estimator federate: network model, measurement functions, estimator, loop."""
