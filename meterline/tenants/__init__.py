"""Tenants and their API keys: the model and repository interface (`model.py`), the Postgres
repository (`postgres.py`)."""

from meterline.tenants.model import (
    SCOPES,
    KeyInfo,
    MemoryTenantRepository,
    Principal,
    Tenant,
    TenantRepository,
    check_scopes,
    check_tenant_name,
    hash_secret,
    new_key,
)
from meterline.tenants.postgres import PostgresTenantRepository

__all__ = [
    "SCOPES",
    "KeyInfo",
    "MemoryTenantRepository",
    "PostgresTenantRepository",
    "Principal",
    "Tenant",
    "TenantRepository",
    "check_scopes",
    "check_tenant_name",
    "hash_secret",
    "new_key",
]
