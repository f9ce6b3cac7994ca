"""The reliability suite: ledger logic, and the CI form against the real stack."""
