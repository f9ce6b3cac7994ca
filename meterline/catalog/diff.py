"""What changes between two catalogs, entry by entry and field by field.

Entries are compared through their documents, so the diff sees exactly what storage sees. The
order of entries within a section is not part of a catalog's meaning and is ignored.
"""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from meterline.catalog.model import Catalog, Document, OverLimit

Section = Literal["meter", "feature", "plan", "policy", "credit_pack", "plan_change"]
_BARE = re.compile(r"[A-Za-z0-9_.+-]+")


class Op(enum.StrEnum):
    ADDED = "added"
    REMOVED = "removed"
    CHANGED = "changed"


class Absent(enum.Enum):
    """Marks the side of a `FieldChange` where the field does not exist."""

    ABSENT = "absent"


ABSENT = Absent.ABSENT
_SIGNS = {Op.ADDED: "+", Op.REMOVED: "-", Op.CHANGED: "~"}


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One field of a changed entry, as a dotted path (`features.api_calls.limit`).

    `old` and `new` are document values (JSON-ready); `ABSENT` on the side lacking the field.
    """

    path: str
    old: object
    new: object

    def line(self) -> str:
        return f"{self.path} {render(self.old)} -> {render(self.new)}"


@dataclass(frozen=True, slots=True)
class EntryChange:
    """One meter, feature, plan or payment policy (keyed by payment state) that changes."""

    section: Section
    key: str
    op: Op
    fields: tuple[FieldChange, ...] = ()

    def lines(self) -> list[str]:
        head = f"{_SIGNS[self.op]} {self.section} {self.key}"
        if self.op is not Op.CHANGED:
            return [head]
        return [f"{head}: {field.line()}" for field in self.fields]


@dataclass(frozen=True, slots=True)
class CatalogDiff:
    """Every change from one catalog to the next. `created`: there was no catalog before."""

    changes: tuple[EntryChange, ...] = ()
    created: bool = False

    @property
    def is_empty(self) -> bool:
        """True when applying the new catalog would change nothing that is stored."""
        return not self.created and not self.changes

    @property
    def added(self) -> tuple[EntryChange, ...]:
        return self._with(Op.ADDED)

    @property
    def removed(self) -> tuple[EntryChange, ...]:
        return self._with(Op.REMOVED)

    @property
    def changed(self) -> tuple[EntryChange, ...]:
        return self._with(Op.CHANGED)

    def _with(self, op: Op) -> tuple[EntryChange, ...]:
        return tuple(change for change in self.changes if change.op is op)

    def lines(self) -> list[str]:
        """One line per change: `+ meter tokens`, `- plan legacy`,
        `~ plan basic: features.api_calls.limit 500 -> 1000` (one line per changed field).
        """
        if self.created and not self.changes:
            return ["+ catalog (empty)"]
        return [line for change in self.changes for line in change.lines()]


def diff_catalogs(old: Catalog | None, new: Catalog) -> CatalogDiff:
    """The changes that turn `old` into `new`; with `old=None`, everything in `new` is added."""
    before, after = _sections(old or Catalog()), _sections(new)
    changes = [
        change
        for section in after
        for change in _diff_section(section, before[section], after[section])
    ]
    return CatalogDiff(changes=tuple(changes), created=old is None)


def _sections(catalog: Catalog) -> dict[Section, dict[str, Document]]:
    return {
        "meter": {m.key: m.to_document() for m in catalog.meters},
        "feature": {f.key: f.to_document() for f in catalog.features},
        "plan": {p.key: p.to_document() for p in catalog.plans},
        "policy": catalog.payment_policies.to_document(),
        "credit_pack": {p.key: p.to_document() for p in catalog.credit_packs},
        "plan_change": _plan_changes(catalog),
    }


def _plan_changes(catalog: Catalog) -> dict[str, Document]:
    """The plan-change policy as an entry, left out while it is the default (block)."""
    policy = catalog.plan_changes.over_limit
    return {} if policy is OverLimit.BLOCK else {"over_limit": {"policy": policy.value}}


def _diff_section(
    section: Section, old: dict[str, Document], new: dict[str, Document]
) -> list[EntryChange]:
    changes: list[EntryChange] = []
    for key, document in new.items():
        if key not in old:
            changes.append(EntryChange(section, key, Op.ADDED))
        elif fields := _field_changes(old[key], document, ""):
            changes.append(EntryChange(section, key, Op.CHANGED, tuple(fields)))
    changes += [EntryChange(section, key, Op.REMOVED) for key in old if key not in new]
    return changes


def _field_changes(old: Any, new: Any, path: str) -> list[FieldChange]:
    if isinstance(old, dict) and isinstance(new, dict):
        keys = [*new, *(k for k in old if k not in new)]
        return [
            change
            for key in keys
            for change in _field_changes(
                old.get(key, ABSENT), new.get(key, ABSENT), f"{path}.{key}" if path else key
            )
        ]
    if type(old) is type(new) and old == new:
        return []
    return [FieldChange(path, old, new)]


def render(value: object) -> str:
    """A compact, YAML-like rendering of a document value for one diff line."""
    if value is ABSENT:
        return "(none)"
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {render(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(render(v) for v in value) + "]"
    text = str(value)
    return (
        text
        if _BARE.fullmatch(text) and text not in ("true", "false", "null")
        else json.dumps(text)
    )
