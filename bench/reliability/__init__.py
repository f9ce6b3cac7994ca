"""The end-to-end reliability suite: a ledger-keeping load generator, faults, and scenarios 1-8.

Run it with `python -m bench.reliability [--ci] [--scenario N]`; see bench/README.md.
"""
