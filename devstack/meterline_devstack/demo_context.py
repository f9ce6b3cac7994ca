"""What every demo step gets: the running stack, the demo tenant and one API key per scope."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from meterline_devstack.stack import DevStack


@dataclass
class DemoContext:
    stack: DevStack
    tenant: str = "demo"
    tenant_id: int = 0
    keys: dict[str, str] = field(default_factory=dict)  # scope -> API key


def out(line: str) -> None:
    sys.stdout.write(line + "\n")
