"""Interrupts held back while worker processes start.

Ctrl-C's :class:`KeyboardInterrupt` (or SIGTERM, raised as one by ``tidal``'s command line)
lands wherever the main thread is. While a ``Manager`` or a process pool is starting, that
leaves a process half started: the Manager's own process prints a traceback as its parent
goes, and a worker started but not yet counted by its pool is not ended with the others.
Inside :func:`held_interrupts`, a signal handler that calls :func:`interrupt` records the
interrupt instead, and it is raised where the block ends, once what was started can be
ended by the caller's cleanup. Outside such a block, :func:`interrupt` raises at once.

Only the main thread's blocks hold: signal handlers run in the main thread. What is held is
the parent's own signal: a terminal's Ctrl-C also reaches every process of its group, and a
spawned child still importing may print its own traceback as it goes (the parent still ends
it; docs/backtest-log.md, 2026-12-03, has the two ways tried to spare it and why neither was
kept).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["held_interrupts", "interrupt"]

#: How many :func:`held_interrupts` blocks the main thread is in.
_depth = 0
#: The first interrupt that came while held, raised when the outermost block ends.
_pending: BaseException | None = None


@contextmanager
def held_interrupts() -> Iterator[None]:
    """While the block runs, :func:`interrupt` records; the first interrupt recorded is raised
    when the outermost block ends (after the block's own exception, if it raised one)."""
    global _depth, _pending
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0 and _pending is not None:
            pending, _pending = _pending, None
            raise pending


def interrupt(error: BaseException) -> None:
    """Raise ``error`` now, or, inside :func:`held_interrupts`, when the block ends. A second
    interrupt while one is held is raised at once (a second Ctrl-C ends a start that hangs);
    the held one is still raised where the block ends. For a signal handler (it runs in the
    main thread)."""
    global _pending
    if _depth and _pending is None:
        _pending = error
        return
    raise error
