"""The `regulator` federate: publishes the policy the market and the DOPF follow."""
