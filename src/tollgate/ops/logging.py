"""Structured logs: one JSON object per line in production, readable lines in development.

Every record carries the request id; a processor redacts sensitive keys and masks emails, card numbers
and credentials inside messages, so nothing secret reaches a log even by mistake. The same processors
run for records from structlog and from the standard library (Django, Huey, allauth), and they run
before rendering, so exception tracebacks are scrubbed too.
"""

from __future__ import annotations

import logging
import logging.config
from typing import Any

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from tollgate.core import context
from tollgate.core.redaction import scrub

# Keys structlog's ProcessorFormatter adds for its own use and removes before rendering.
_FORMATTER_META = ("_record", "_from_structlog")
# What the processors below write themselves (a timestamp, a level, a logger's name) carries
# nothing to redact; left out of the scrubber, a fresh timestamp no longer costs a full scan.
_OWN_FIELDS = ("timestamp", "level", "logger")


def _add_request_context(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    current = context.current()
    if current.request_id:
        event_dict.setdefault("request_id", current.request_id)
    return event_dict


def _redact_request_path(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Django's request and security loggers name the request's raw path in the message, which may
    hold a verification key or reset token; their records carry the request to redact it with."""
    record = event_dict.get("_record")
    request = getattr(record, "request", None)
    if request is not None and isinstance(event_dict.get("event"), str):
        from tollgate.ops.paths import redact_request_path_in

        event_dict["event"] = redact_request_path_in(event_dict["event"], request)
    return event_dict


def _redact(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    kept = {key: event_dict.pop(key) for key in _FORMATTER_META + _OWN_FIELDS if key in event_dict}
    request_id = event_dict.get("request_id")
    if request_id and request_id == context.current().request_id:
        # The request's own id: accepted or made only if the scrubber leaves it as it is.
        kept["request_id"] = event_dict.pop("request_id")
    redacted: EventDict = scrub(event_dict)
    redacted.update(kept)
    return redacted


def shared_processors() -> list[Processor]:
    """The processors every record goes through, whichever library logged it."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_request_context,
        structlog.processors.format_exc_info,
        _redact_request_path,
        _redact,
    ]


def structured_formatter(fmt: str = "json") -> structlog.stdlib.ProcessorFormatter:
    """The formatter of Tollgate's log handler: ``json`` (one object per line) or ``console``."""
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    return structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        foreign_pre_chain=shared_processors(),
    )


def _at_least(level: str, floor: str) -> str:
    return level if logging.getLevelName(level) >= logging.getLevelName(floor) else floor


def configure_logging(*, level: str, fmt: str) -> None:
    """Send every record (structlog's and the standard library's) through one handler on stderr."""
    config: dict[str, Any] = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"structured": {"()": structured_formatter, "fmt": fmt}},
        "handlers": {
            "console": {"class": "logging.StreamHandler", "formatter": "structured"},
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            # Request lines are logged by RequestContextMiddleware, with the request id.
            "django.server": {"level": _at_least(level, "WARNING")},
            "django.request": {"level": _at_least(level, "ERROR")},
            # Even with LOG_LEVEL=DEBUG: their debug records dump whole template contexts (request
            # paths holding reset tokens, form values) and SQL parameters (session keys, password
            # hashes, emails), which no text scrubber can recognise.
            "django.template": {"level": _at_least(level, "INFO")},
            "django.db.backends": {"level": _at_least(level, "INFO")},
            "huey": {"level": _at_least(level, "INFO")},
            # The S3 client's debug records carry request headers (the access key id, signatures).
            "botocore": {"level": _at_least(level, "INFO")},
            "boto3": {"level": _at_least(level, "INFO")},
            "s3transfer": {"level": _at_least(level, "INFO")},
        },
    }
    logging.config.dictConfig(config)
    structlog.configure(
        processors=[*shared_processors(), structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    logging.captureWarnings(True)
