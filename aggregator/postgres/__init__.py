"""The aggregator's repositories: a batch's Postgres write (`ledger.py`)."""
