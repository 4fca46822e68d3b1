"""The sensor federate: meters, noise, dropouts, bad data and pseudo-measurements."""
