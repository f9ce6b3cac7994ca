"""JSON-lines logging shared by every service: one object per line on stderr."""

from __future__ import annotations

import logging
import logging.config
import sys
from typing import Any

import orjson

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "color_message"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, extras and the exception."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        doc.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


def log_config(service: str, level: str) -> dict[str, Any]:
    """A `logging.config.dictConfig` for uvicorn, `meterline` and the service's own loggers
    at `level` (uvicorn's access log off); everything else at WARNING."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": sys.stderr}
    chosen = {"handlers": ["json"], "level": level.upper(), "propagate": False}
    names = ("uvicorn", "uvicorn.error", "meterline", service)
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"json": handler},
        "loggers": dict.fromkeys(names, chosen),
        "root": {"handlers": ["json"], "level": "WARNING"},
    }


def configure(service: str, level: str) -> None:
    """Apply `log_config` (for processes that do not hand the config to uvicorn)."""
    logging.config.dictConfig(log_config(service, level))
