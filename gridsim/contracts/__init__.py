"""Contracts between federates: what one side computes and the other checks, defined once.

A contract is pure data and arithmetic (no HELICS, no solver, no federate import), so that a
checker never has to load, or trust, the code it checks. The market federate publishes with
these definitions and the auditor reads with them; the benchmarks build the same messages.

The market contract (docs/market.md, docs/audit.md):

- `gridsim.contracts.bid`: `Bid`, a concave piecewise-linear value function; what an entity
  signs (`bid_content`, `sign_bid_for_round`) and its inverse (`bid_from_content`,
  `bid_of_entry`).
- `gridsim.contracts.book`: `OrderBook`, every bid of a market as flat arrays.
- `gridsim.contracts.certificate`: the clearing's optimality certificate as named arrays
  (`PrimalDual`, from and to `gridsim.messages.Certificate`) and its check with arithmetic
  only (`verify_certificate` -> `CertificateCheck`).
- `gridsim.contracts.clearing`: `clearing_message`, the one builder of the
  `gridsim.messages.MarketClearing` a round publishes.

Importing this package has no side effects; import the modules themselves.
"""
