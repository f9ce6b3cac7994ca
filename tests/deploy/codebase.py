"""What the code says the deployment must match: entry points, ports, settings, routes, metrics.

Everything is read from the code as it is now. A service package that does not exist yet (its
`__main__.py` is missing) makes the checks that depend on it *pending*: they skip with a reason
naming what is missing, shown by `pytest -ra`, and run as soon as the package lands.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import pkgutil
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

import pytest
import typer
from pydantic_settings import BaseSettings

from meterline import settings as shared_settings
from meterline.dunning.settings import DunningSettings
from meterline.postgres.retention import RetentionSettings
from meterline_devstack.stack import SERVICES

from .tools import ROOT


@dataclass(frozen=True)
class Service:
    """A deployable service as `meterline dev up` knows it (meterline_devstack/stack.py)."""

    name: str
    module: str
    port_env: str
    default_port: int

    @property
    def exists(self) -> bool:
        return importlib.util.find_spec(f"{self.module}.__main__") is not None

    @property
    def source(self) -> str:
        return "\n".join(p.read_text() for p in sorted((ROOT / self.module).rglob("*.py")))

    def require_metrics(self) -> None:
        """Skip as pending while the service declares no Prometheus metric yet."""
        if "prometheus_client" not in self.source:
            pytest.skip(f"pending: {self.module}/ declares no metrics yet")

    def require(self) -> None:
        """Skip as pending while the service's package has no entry point yet."""
        if not self.exists:
            pytest.skip(f"pending: {self.module}/__main__.py does not exist yet")


SERVICE_LIST = [
    Service(s.name, s.module, s.port_env, s.default_port) for s in SERVICES if s.port_env
]
BY_MODULE = {s.module: s for s in SERVICE_LIST}

SHARED_SECTIONS: list[type[BaseSettings]] = [
    shared_settings.KafkaSettings,
    shared_settings.DatabaseSettings,
    shared_settings.RedisSettings,
    shared_settings.StripeSettings,
    shared_settings.ServiceSettings,
    DunningSettings,  # the entitlements API and the reporter read the same section
]
# Sections read by scheduled commands rather than by a service (`meterline retention run`).
JOB_SECTIONS: list[type[BaseSettings]] = [RetentionSettings]


def env_names(cls: type[BaseSettings]) -> dict[str, bool]:
    """Environment variable of each field of a settings class -> whether it is required."""
    prefix = str(cls.model_config.get("env_prefix", ""))
    names: dict[str, bool] = {}
    for name, info in cls.model_fields.items():
        alias = info.validation_alias if isinstance(info.validation_alias, str) else None
        names[(alias or prefix + name).upper()] = info.is_required()
    return names


@cache
def service_sections(module: str) -> tuple[type[BaseSettings], ...]:
    """The BaseSettings classes defined inside a service package (its own sections)."""
    found: dict[str, type[BaseSettings]] = {}
    package = ROOT / module
    for path in sorted(package.rglob("*.py")):
        if "BaseSettings" not in path.read_text():
            continue
        rel = path.relative_to(ROOT).with_suffix("")
        name = ".".join(rel.parts).removesuffix(".__init__")
        mod = importlib.import_module(name)
        for obj in vars(mod).values():
            if (
                inspect.isclass(obj)
                and issubclass(obj, BaseSettings)
                and obj.__module__ == mod.__name__
            ):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return tuple(found.values())


def shared_sections_used(service: Service) -> list[type[BaseSettings]]:
    """Shared sections the service reads: all of them via `load_settings`, else those it names."""
    source = service.source
    if "load_settings" in source:
        return list(SHARED_SECTIONS)
    return [cls for cls in SHARED_SECTIONS if re.search(rf"\b{cls.__name__}\b", source)]


def settings_of(service: Service) -> dict[str, bool]:
    """Every environment variable the service reads -> whether it is required."""
    names: dict[str, bool] = {}
    for cls in [*shared_sections_used(service), *service_sections(service.module)]:
        names.update(env_names(cls))
    return names


def all_known_settings() -> set[str]:
    """Every METERLINE_* variable any settings class in the code reads."""
    known: set[str] = set()
    for cls in [*SHARED_SECTIONS, *JOB_SECTIONS]:
        known |= set(env_names(cls))
    for service in SERVICE_LIST:
        for cls in service_sections(service.module):
            known |= set(env_names(cls))
    return known


def serves_path(service: Service, path: str) -> bool:
    """True when the route literal is in the service or the shared kernel (devstack aside)."""
    literal = re.compile(rf"[\"']{re.escape(path)}[\"']")
    if literal.search(service.source):
        return True
    kernel = (ROOT / "meterline").rglob("*.py")
    return any(literal.search(p.read_text()) for p in kernel if "devstack" not in p.parts)


def cli_command(*path: str) -> Any:
    """The `meterline` click command at `path`, e.g. ("reconcile", "run"), or None."""
    from meterline_ops.main import app

    command: Any = typer.main.get_command(app)
    for name in path:
        command = getattr(command, "commands", {}).get(name)
    return command


METRIC_SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created")


def metric_base(name: str) -> str:
    for suffix in METRIC_SUFFIXES:
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


def owner_of_metric(name: str) -> Service:
    """Metric names follow `meterline_<service>_...` (`entitlements` for entitlements_api)."""
    for service in SERVICE_LIST:
        if name.startswith(f"meterline_{service.name}_"):
            return service
    raise AssertionError(f"{name}: no service owns the prefix (meterline_<service>_...)")


def defined_metrics(service: Service) -> set[str]:
    """Base names of the Prometheus metrics the service (or the shared kernel) declares."""
    sources = [service.source, *(p.read_text() for p in (ROOT / "meterline").rglob("*.py"))]
    literals = set(re.findall(r"[\"'](meterline_[a-z0-9_]+)[\"']", "\n".join(sources)))
    return {metric_base(n) for n in literals} | _registered_metrics(service)


def _registered_metrics(service: Service) -> set[str]:
    """Names of collectors found in the service's metrics modules (names built from parts)."""
    names: set[str] = set()
    package = importlib.import_module(service.module)
    for info in pkgutil.walk_packages(package.__path__, f"{service.module}."):
        if "metric" not in info.name.rsplit(".", 1)[-1]:
            continue
        for obj in vars(importlib.import_module(info.name)).values():
            describe = getattr(obj, "describe", None)
            if callable(describe) and hasattr(obj, "_name"):
                names |= {metric_base(m.name) for m in describe()}
    return names
