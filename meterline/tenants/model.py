"""Tenants and their API keys: the model, the repository interface and its memory version.

A key reads `mlk_<key id>_<secret>`; only its SHA-256 is stored, so a key is shown once, at
creation. The tenant and the scopes come from the key alone.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime

from meterline.errors import Conflict, FieldError, NotFound, ValidationFailed

SCOPES = ("ingest", "read", "admin", "billing")
_TENANT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


@dataclass(frozen=True, slots=True)
class Tenant:
    id: int
    name: str


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts for: the tenant and scopes of the key it presented."""

    tenant_id: int
    tenant_name: str
    key_id: str
    scopes: frozenset[str]


@dataclass(frozen=True, slots=True)
class KeyInfo:
    id: str
    tenant: str
    scopes: tuple[str, ...]
    created_at: datetime | None = None
    revoked_at: datetime | None = None


def hash_secret(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def new_key() -> tuple[str, str]:
    """A fresh (key id, full key)."""
    key_id = "key_" + secrets.token_hex(8)
    return key_id, f"mlk_{key_id}_{secrets.token_urlsafe(32)}"


def check_tenant_name(name: str) -> str:
    if not _TENANT_NAME.fullmatch(name):
        message = "lowercase letters, digits, - and _, starting with a letter or digit, at most 63"
        raise ValidationFailed([FieldError("name", message)])
    return name


def check_scopes(scopes: list[str]) -> tuple[str, ...]:
    bad = [s for s in scopes if s not in SCOPES]
    if bad or not scopes:
        message = f"scopes must be among {', '.join(SCOPES)}" + (f"; got {bad}" if bad else "")
        raise ValidationFailed([FieldError("scope", message)])
    return tuple(dict.fromkeys(scopes))


class TenantRepository(ABC):
    """Tenants and keys. `authenticate` is on the hot path: callers cache its answers."""

    @abstractmethod
    def create_tenant(self, name: str) -> Tenant: ...

    @abstractmethod
    def get_tenant(self, name: str) -> Tenant: ...

    @abstractmethod
    def create_key(self, tenant: str, scopes: list[str]) -> tuple[KeyInfo, str]:
        """Return the key's info and the full key, which is never retrievable again."""

    @abstractmethod
    def revoke_key(self, key_id: str) -> None: ...

    @abstractmethod
    def list_keys(self, tenant: str) -> list[KeyInfo]: ...

    @abstractmethod
    def authenticate(self, key: str) -> Principal | None:
        """The principal of a live key, or None for an unknown or revoked one."""

    @abstractmethod
    def live_key_ids(self) -> set[str]:
        """The ids of every key not revoked (one cheap read: see `meterline.auth.KeyIds`)."""


@dataclass
class MemoryTenantRepository(TenantRepository):
    tenants: dict[str, Tenant] = field(default_factory=dict)
    keys: dict[bytes, tuple[KeyInfo, int]] = field(default_factory=dict)

    def create_tenant(self, name: str) -> Tenant:
        check_tenant_name(name)
        if name in self.tenants:
            raise Conflict(f"tenant {name!r} already exists")
        tenant = Tenant(len(self.tenants) + 1, name)
        self.tenants[name] = tenant
        return tenant

    def get_tenant(self, name: str) -> Tenant:
        if name not in self.tenants:
            raise NotFound(f"no tenant {name!r}")
        return self.tenants[name]

    def create_key(self, tenant: str, scopes: list[str]) -> tuple[KeyInfo, str]:
        t = self.get_tenant(tenant)
        key_id, key = new_key()
        info = KeyInfo(key_id, tenant, check_scopes(scopes))
        self.keys[hash_secret(key)] = (info, t.id)
        return info, key

    def revoke_key(self, key_id: str) -> None:
        for digest, (info, tid) in self.keys.items():
            if info.id == key_id:
                self.keys[digest] = (
                    KeyInfo(info.id, info.tenant, info.scopes, None, datetime.now()),
                    tid,
                )
                return
        raise NotFound(f"no key {key_id!r}")

    def list_keys(self, tenant: str) -> list[KeyInfo]:
        return [info for info, _ in self.keys.values() if info.tenant == tenant]

    def authenticate(self, key: str) -> Principal | None:
        found = self.keys.get(hash_secret(key))
        if found is None or found[0].revoked_at is not None:
            return None
        info, tid = found
        return Principal(tid, info.tenant, info.id, frozenset(info.scopes))

    def live_key_ids(self) -> set[str]:
        return {info.id for info, _ in self.keys.values() if info.revoked_at is None}
