"""structlog set-up: JSON lines in a pod (what log collectors parse), colours on a terminal.

Named ``logs`` rather than ``logging`` so that it never shadows the standard library module.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog

__all__ = ["configure_logging", "use_json"]


def use_json(log_format: Literal["json", "console", "auto"], *, stream: object = None) -> bool:
    """``auto`` means JSON unless standard error is a terminal."""
    if log_format != "auto":
        return log_format == "json"
    target = stream if stream is not None else sys.stderr
    isatty = getattr(target, "isatty", None)
    return not (callable(isatty) and isatty())


def configure_logging(
    log_format: Literal["json", "console", "auto"] = "auto", level: str = "info"
) -> None:
    """Configure structlog (and route the standard library's records through it)."""
    json_lines = use_json(log_format)
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    # Tracebacks without each frame's local variables: those hold URLs with their passwords,
    # tokens and headers, and a log is read by more people than the Secret they came from.
    colors = sys.stderr.isatty()
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if json_lines
        else structlog.dev.ConsoleRenderer(
            colors=colors,
            exception_formatter=structlog.dev.RichTracebackFormatter(
                color_system="truecolor" if colors else None, show_locals=False
            ),
        )
    )
    tracebacks: structlog.types.Processor = (
        structlog.processors.ExceptionRenderer(
            structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        )
        if json_lines
        else structlog.dev.set_exc_info
    )
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            tracebacks,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    # Libraries (urllib3, kubernetes) log through the standard library: their warnings are
    # kept, rendered as tidal's own lines (a JSON line in a pod, not plain text among them).
    # As ``logging.basicConfig``, only where the root logger has no handler yet.
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
                processors=[
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    tracebacks,
                    renderer,
                ],
            )
        )
        root.addHandler(handler)
        root.setLevel(logging.WARNING)
