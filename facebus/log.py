"""Logging: one line per outcome on stdout; JSON lines when stdout is not a terminal or ``FACEBUS_LOG_JSON=1``.

Use lazy ``%s`` arguments and ``extra={...}`` for structured fields (never the keys ``name``, ``msg``, ``args``).
"""

from __future__ import annotations

import json
import logging
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from facebus.settings import LogSettings

_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, the ``extra`` fields and any exception."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update({k: v for k, v in vars(record).items() if k not in _RESERVED})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    """``time level logger: message key=value ...``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extras = " ".join(f"{k}={v}" for k, v in vars(record).items() if k not in _RESERVED)
        return f"{text} {extras}" if extras else text


def setup(settings: LogSettings | None = None, stream=None) -> None:
    """Configure the root logger once per process from ``settings`` (default: ``FACEBUS_LOG_LEVEL`` and
    ``FACEBUS_LOG_JSON`` from the environment or ``.env``): JSON lines unless ``json_lines`` is false, by default
    unless the stream is a terminal. ``stream``: stdout for the services; stderr for tools whose stdout is their
    result."""
    from facebus.settings import LogSettings

    settings = settings or LogSettings()
    stream = stream or sys.stdout
    json_lines = settings.json_lines if settings.json_lines is not None else not stream.isatty()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level)
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
