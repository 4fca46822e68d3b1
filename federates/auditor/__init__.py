"""The `auditor` federate: re-verifies the market's bids, log, clearing, payments and the
feeder's metering, and publishes findings with stable codes."""
