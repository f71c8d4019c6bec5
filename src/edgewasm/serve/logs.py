"""Structured logs: one line per event on stderr, as text or as JSON objects (`--log-format json`).

Fields beyond the message travel in `extra={"fields": {...}}`; the access log carries the request id, method,
path, status, model and duration. uvicorn's own loggers go through the same handler.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
from typing import Any


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    #: Fields the access log's text message already shows.
    SHOWN = frozenset({"method", "path", "status", "ms"})

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict) and fields:
            text += " " + " ".join(f"{k}={v}" for k, v in fields.items() if k not in self.SHOWN)
        return text


def setup(fmt: str = "text", level: str = "info") -> None:
    """Send edgewasm's and uvicorn's logs to stderr in `fmt` ("text" or "json") at `level`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    for name in ("edgewasm", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False
    logging.getLogger("uvicorn.access").disabled = True  # the server writes its own access log


def uvicorn_log_config() -> dict[str, Any]:
    """Keep uvicorn from installing its own handlers (ours are set up by `setup`)."""
    return {"version": 1, "disable_existing_loggers": False}
