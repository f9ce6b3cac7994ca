"""The registry every service's metrics live in."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector


def service_registry() -> CollectorRegistry:
    """A registry of a service's own metrics that also exports the process's (`process_*`:
    CPU, resident memory, open file descriptors, start time), the interpreter's (`python_info`)
    and the garbage collector's (`python_gc_*`), as the default registry would: dashboards and
    alerts on saturation and leaks need them."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry
