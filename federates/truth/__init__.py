"""The `truth` estimator federate: the feeder's true voltages, published as an estimate."""
