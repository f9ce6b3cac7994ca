"""`.meterline/stack.json`: the running dev stack's URLs and the PID of each process it started."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import orjson

STACK_FILE = "stack.json"


@dataclass
class Stack:
    urls: dict[str, str] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    supervisor_pid: int | None = None

    def to_json(self) -> bytes:
        doc = {**self.urls, "pids": self.pids, "supervisor_pid": self.supervisor_pid}
        return orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)


def read_stack(home: Path) -> Stack | None:
    """The stack described in `home`, or None when there is none (or its file is unreadable)."""
    try:
        doc = orjson.loads((home / STACK_FILE).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    pids = {str(k): int(v) for k, v in doc.pop("pids", {}).items()}
    supervisor = doc.pop("supervisor_pid", None)
    urls = {str(k): str(v) for k, v in doc.items() if isinstance(v, str)}
    return Stack(urls=urls, pids=pids, supervisor_pid=supervisor)


def write_stack(home: Path, stack: Stack) -> None:
    """Replace the file atomically, so readers never see half of it."""
    home.mkdir(parents=True, exist_ok=True)
    tmp = home / f".{STACK_FILE}.{os.getpid()}"
    tmp.write_bytes(stack.to_json())
    tmp.replace(home / STACK_FILE)


def remove_stack(home: Path) -> None:
    (home / STACK_FILE).unlink(missing_ok=True)
