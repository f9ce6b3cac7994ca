"""What every service's start-up does once it has built its parts, before it serves.

`settle_garbage_collector`: what start-up built (modules, clients, caches, metrics: 65,000 to
90,000 objects the cyclic collector tracks) lives as long as the process, yet every full
collection walked all of it again. Frozen (`gc.freeze`), it is never scanned: the aggregator's
collector cost ~1 µs less CPU per event and its full passes stalled 17-30 ms instead of
46-76 ms; ingest's and the entitlements API's full passes under load now scan only what
requests and held connections made (bench/HISTORY.md). The thresholds stay Python's: with young
objects collected every 50,000 allocations instead of 700, the reference cycles of refused and
failed requests piled up under overload (ingest's RSS 88 -> 974 MiB in reliability scenario 7;
flat at ~220 MiB with the defaults), and the collections a flood triggers cost ingest 1-4 ms
each (gen 1) against 6-11 ms for the one full pass of a 5 s attack (bench/HISTORY.md).
"""

from __future__ import annotations

import gc


def settle_garbage_collector() -> None:
    """Collect what start-up left as garbage, then freeze every object still alive out of all
    later collections. Call it once, after the service's parts are built, before serving."""
    gc.collect()
    gc.freeze()
