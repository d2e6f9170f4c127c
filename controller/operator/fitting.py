"""Fitted models per object, refitted off the loop.

A fit reads the whole history (days of samples) and estimates a model: seconds of work. It runs
in a small thread pool; the loop keeps forecasting from the previous fit while a new one runs,
so one slow fit never holds up the other objects. A model is kept per object uid and per
fingerprint of the spec's ``load`` and ``forecast`` sections: editing ``replicas.max`` keeps
the fit, editing the query or the model starts afresh.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from controller.spec import GatewayAutoscalerSpec
from forecasts.base import FittedModel

__all__ = ["FitState", "ModelStore", "fit_error", "spec_fingerprint"]


def spec_fingerprint(spec: GatewayAutoscalerSpec) -> str:
    """A short hash of the sections a fit depends on."""
    text = json.dumps(
        {
            "load": spec.load.model_dump(mode="json"),
            "forecast": spec.forecast.model_dump(mode="json"),
        },
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def fit_error(fitted: FittedModel, *, steps: int | None = None) -> float | None:
    """Mean absolute level-scaled error of the fit's own backtest over the first ``steps`` leads
    (of the point against each bucket's mean).

    A declared ``error`` attribute (a model chosen by backtest, like ``auto``) wins.
    """
    declared = getattr(fitted, "error", None)
    if isinstance(declared, int | float) and np.isfinite(declared):
        return float(declared)
    # The point's errors against the buckets' means, not the band's errors of every sample.
    rows = fitted.calibration.point_errors[: steps or None]
    return float(np.mean(rows)) if rows.size else None


@dataclass
class FitState:
    """What one object's model looks like now."""

    fingerprint: str
    fitted: FittedModel | None = None
    fitted_at: float | None = None
    #: The last fit's failure (``(reason, message)``), cleared by a success.
    problem: tuple[str, str] | None = None
    running: Future[FittedModel] | None = None
    #: When the running fit was started (the caller's clock).
    started_at: float | None = None
    next_fit: float = 0.0


@dataclass
class ModelStore:
    """Per-object fit state and the executor that fits."""

    workers: int = 2
    retry: float = 30.0
    on_fit: Callable[[str, FittedModel], None] | None = None
    _states: dict[str, FitState] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _executor: ThreadPoolExecutor | None = None

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="tidal-fit")
        return self._executor

    def current(
        self,
        uid: str,
        *,
        fingerprint: str,
        now: float,
        refit: float,
        fit: Callable[[FittedModel | None], FittedModel],
        classify: Callable[[BaseException], tuple[str, str]],
    ) -> FitState:
        """The object's fit state, after collecting a finished fit and starting a due one.

        ``fit(previous)`` runs in the pool; ``classify(exc)`` turns its failure into a
        condition ``(reason, message)``.
        """
        with self._lock:
            state = self._states.get(uid)
            if state is None or state.fingerprint != fingerprint:
                if state is not None and state.running is not None:
                    # A fit of the spec before an edit: still queued, it never runs, and the
                    # new one does not wait behind it (one already running ends unread).
                    state.running.cancel()
                state = self._states[uid] = FitState(fingerprint)
            if state.running is not None and state.running.done():
                future, state.running = state.running, None
                exc = future.exception()
                if exc is None:
                    state.fitted, state.fitted_at, state.problem = future.result(), now, None
                    state.next_fit = now + refit
                    if self.on_fit is not None:
                        self.on_fit(uid, state.fitted)
                else:
                    state.problem = classify(exc)
                    state.next_fit = now + min(self.retry, refit)
            if state.running is None and now >= state.next_fit:
                previous = state.fitted
                state.running = self._pool().submit(fit, previous)
                state.started_at = now
            return state

    def wait(self, uid: str, timeout: float | None = None) -> None:
        """Block until the object's running fit ends (tests and ``run_once``)."""
        with self._lock:
            state = self._states.get(uid)
            future = state.running if state else None
        if future is not None:
            with contextlib.suppress(TimeoutError):
                future.exception(timeout=timeout)

    def holds_any(self) -> bool:
        with self._lock:
            return bool(self._states)

    def prune(self, live: set[str]) -> None:
        """Forget the objects that are gone."""
        with self._lock:
            for uid in set(self._states) - live:
                state = self._states.pop(uid)
                if state.running is not None:
                    state.running.cancel()

    def shutdown(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
