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

import multiprocessing
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack, contextmanager
from multiprocessing.context import BaseContext
from typing import Any, TypeVar

__all__ = ["held_interrupts", "interrupt", "started_workers", "terminate_workers"]

T = TypeVar("T")

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


@contextmanager
def started_workers(
    workers: int,
    submit: Callable[[Any, ProcessPoolExecutor], T],
    *,
    context: BaseContext | None = None,
) -> Iterator[T]:
    """A ``Manager`` and a pool of ``workers`` processes (of ``context``, else the default),
    and ``submit(manager, pool)``'s work handed to them, all with interrupts held, so that none
    is left half started; yields what ``submit`` returned. An interrupt (Ctrl-C, or SIGTERM
    raised as one) then ends the workers at once, not at the end of their work, and leaving the
    block ends the pool, then the Manager."""
    mp = context or multiprocessing.get_context()
    with ExitStack() as started:
        pool: ProcessPoolExecutor | None = None
        try:
            with held_interrupts():
                manager = started.enter_context(mp.Manager())
                pool = started.enter_context(ProcessPoolExecutor(workers, mp_context=mp))
                submitted = submit(manager, pool)
            yield submitted
        except KeyboardInterrupt:
            if pool is not None:
                terminate_workers(pool)
            raise


def terminate_workers(pool: ProcessPoolExecutor) -> None:
    """End ``pool``'s worker processes now, whatever they are running: leaving the pool's
    ``with`` block then finds them gone and does not wait for their work to finish.

    For an interrupt (Ctrl-C, or SIGTERM raised as one), where the workers may not have been
    signalled themselves (SIGINT to the parent alone, or SIGTERM from ``timeout`` or a
    Kubernetes Job). SIGKILL, not SIGTERM: a forked worker keeps its parent's handlers. The
    work queued and not started fails with the pool (Python 3.14 has ``terminate_workers``
    for this; before it, the processes are the pool's ``_processes``).
    """
    processes: Mapping[int, Any] = getattr(pool, "_processes", None) or {}
    for process in list(processes.values()):
        if process.is_alive():
            process.kill()
