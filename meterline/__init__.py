"""Meterline's kernel: the domain (events, catalog, entitlements, usage) and its adapters."""

__version__ = "0.1.0"
