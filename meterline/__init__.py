"""Meterline's shared kernel: event model, settings, adapters, catalog, CLI and devstack."""

__version__ = "0.1.0"
