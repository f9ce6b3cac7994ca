"""JSON-lines logging for the service and uvicorn's own loggers."""

from __future__ import annotations

import logging
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
        return orjson.dumps(doc, default=str).decode()


def log_config(level: str) -> dict[str, Any]:
    """A `logging.config.dictConfig` for uvicorn and the `reporter` loggers."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": sys.stderr}
    quiet = {"handlers": ["json"], "level": level.upper(), "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"json": handler},
        "loggers": {"uvicorn": quiet, "uvicorn.error": quiet, "reporter": quiet},
        "root": {"handlers": ["json"], "level": "WARNING"},
    }
