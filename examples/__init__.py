"""Example apps built on Meterline, for reading and for `make run`; not production code (no
wheel ships them). They talk to Meterline only through the SDK and the public HTTP APIs."""
