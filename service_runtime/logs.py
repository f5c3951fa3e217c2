"""JSON log lines (python-json-logger): one object per line with time, level, service, logger, message,
and the trace_id/span_id of the span current when the line was written (a request's server span, a
saga step, a consumer's message), so a log line leads to its trace and back.

    {"time": "2026-12-01 07:30:00,123", "level": "INFO", "service": "gateway", "logger": "gateway.runner",
     "message": "checkout chk_… completed: …", "trace_id": "4bf9…", "span_id": "00f0…"}

Lines written outside any span have empty trace_id and span_id. What services log are identifiers and
outcomes, never card data, tokens or secrets (the notification log sender writes no recipient address).
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

from opentelemetry import trace
from pythonjsonlogger.json import JsonFormatter


class TraceContext(logging.Filter):
    """Adds the service name and the current span's trace and span ids to every record."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        record.service = self._service
        if context.is_valid:
            record.trace_id = format(context.trace_id, "032x")
            record.span_id = format(context.span_id, "016x")
        else:
            record.trace_id = record.span_id = ""
        return True


def json_handler(service: str, stream: TextIO) -> logging.Handler:
    """A handler writing `service`'s records to `stream` as JSON lines (see the module docstring)."""
    handler = logging.StreamHandler(stream)
    handler.addFilter(TraceContext(service))
    handler.setFormatter(
        JsonFormatter(
            "{asctime}{levelname}{service}{name}{message}{trace_id}{span_id}",
            style="{",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    )
    return handler


def configure_logging(service: str, level: str, stream: TextIO | None = None) -> None:
    """The process's logging: JSON lines on stderr at `level` (LOG_LEVEL)."""
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(json_handler(service, stream or sys.stderr))
    root.setLevel(level)
