"""The operator's fits off the loop (controller.operator.fitting): a fit started on one pass is
collected on a later one, a failure waits ``retry`` before the next try, the previous fit is
handed on, a spec change starts afresh, a gone object's queued fit is cancelled, a store shut
down fits again, and the error a fit reports of itself."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from controller.operator.fitting import FitState, ModelStore, fit_error

T0 = 1_700_000_000.0


class Fits:
    """A fit function that records what it was handed, and fails or blocks when told."""

    def __init__(self) -> None:
        self.handed: list[Any] = []
        self.fail: BaseException | None = None
        self.gate: threading.Event | None = None
        self.count = 0

    def __call__(self, previous: Any) -> Any:
        self.handed.append(previous)
        if self.gate is not None:
            self.gate.wait(5)
        if self.fail is not None:
            raise self.fail
        self.count += 1
        return SimpleNamespace(name=f"fit-{self.count}")


def classify(exc: BaseException) -> tuple[str, str]:
    return ("FitFailed", str(exc))


def ask(
    store: ModelStore,
    fits: Callable[[Any], Any],
    now: float,
    *,
    uid: str = "u1",
    fingerprint: str = "f1",
    refit: float = 900.0,
) -> FitState:
    return store.current(
        uid, fingerprint=fingerprint, now=now, refit=refit, fit=fits, classify=classify
    )


@pytest.fixture
def store() -> Any:
    heard: list[tuple[str, Any]] = []
    models = ModelStore(workers=1, retry=30.0, on_fit=lambda uid, f: heard.append((uid, f)))
    models.heard = heard  # type: ignore[attr-defined]
    yield models
    models.shutdown()


def test_a_fit_started_on_one_pass_is_collected_on_a_later_one(store: ModelStore) -> None:
    """The first pass starts the fit and plans without it; a pass after it ended collects it,
    dates it, schedules the next one a ``refit`` later, and tells ``on_fit`` once."""
    fits = Fits()
    first = ask(store, fits, T0)
    assert first.fitted is None and first.running is not None and first.started_at == T0
    store.wait("u1", timeout=5)
    later = ask(store, fits, T0 + 60)
    assert later.fitted.name == "fit-1" and later.fitted_at == T0 + 60
    assert later.next_fit == T0 + 60 + 900 and later.running is None
    assert store.heard == [("u1", later.fitted)]  # type: ignore[attr-defined]
    # Not due yet: nothing more is started, and on_fit is not told again.
    assert ask(store, fits, T0 + 959).running is None and fits.handed == [None]
    # Due: the next fit starts from the one before.
    assert ask(store, fits, T0 + 960).running is not None
    store.wait("u1", timeout=5)
    assert fits.handed == [None, later.fitted]


def test_a_failed_fit_is_reported_and_tried_again_after_retry(store: ModelStore) -> None:
    """A failure becomes the state's problem and the next try waits ``retry`` (30 s), not a
    whole ``refit``; the success after it clears the problem and keeps no stale reason."""
    fits = Fits()
    fits.fail = ValueError("too few samples")
    ask(store, fits, T0)
    store.wait("u1", timeout=5)
    failed = ask(store, fits, T0 + 10)
    assert failed.problem == ("FitFailed", "too few samples") and failed.fitted is None
    assert failed.next_fit == T0 + 40 and failed.running is None
    assert ask(store, fits, T0 + 39).running is None
    fits.fail = None
    assert ask(store, fits, T0 + 40).running is not None
    store.wait("u1", timeout=5)
    recovered = ask(store, fits, T0 + 50)
    assert recovered.problem is None and recovered.fitted.name == "fit-1"
    assert store.heard == [("u1", recovered.fitted)]  # type: ignore[attr-defined]


def test_a_retry_never_waits_longer_than_a_refit(store: ModelStore) -> None:
    """With a ``refit`` shorter than ``retry``, a failed fit is tried again a ``refit`` later."""
    fits = Fits()
    fits.fail = RuntimeError("boom")
    ask(store, fits, T0, refit=10.0)
    store.wait("u1", timeout=5)
    assert ask(store, fits, T0 + 1, refit=10.0).next_fit == T0 + 11


def test_a_changed_fingerprint_starts_afresh(store: ModelStore) -> None:
    """Editing the query or the model (another fingerprint) drops the old fit: the next one is
    handed nothing to continue from, and plans wait for it."""
    fits = Fits()
    ask(store, fits, T0)
    store.wait("u1", timeout=5)
    assert ask(store, fits, T0 + 1).fitted is not None
    changed = ask(store, fits, T0 + 2, fingerprint="f2")
    assert changed.fingerprint == "f2" and changed.fitted is None
    store.wait("u1", timeout=5)
    assert fits.handed == [None, None]


def test_a_gone_object_s_queued_fit_is_cancelled_and_forgotten(store: ModelStore) -> None:
    """With the only worker busy, a gone object's fit still queued is cancelled, never runs,
    and its state is forgotten; a live object's state is kept."""
    busy, queued = Fits(), Fits()
    busy.gate = threading.Event()
    ask(store, busy, T0, uid="live")
    waiting = ask(store, queued, T0, uid="gone")
    store.prune({"live"})
    assert waiting.running is not None and waiting.running.cancelled()
    busy.gate.set()
    store.wait("live", timeout=5)
    assert queued.handed == []
    assert ask(store, busy, T0 + 1, uid="live").fitted is not None
    # The gone object, listed again, starts from nothing.
    again = ask(store, queued, T0 + 1, uid="gone")
    assert again.fitted is None and again.running is not None


def test_an_edit_cancels_the_fit_of_the_spec_before_still_queued(store: ModelStore) -> None:
    """Edits in a row, with the only worker busy: the fit of each spec edited away, still
    queued, is cancelled and never runs; only the last spec's waits for the worker. Before,
    every edit's fit ran in turn, and the last one's waited behind them all."""
    busy, edits = Fits(), Fits()
    busy.gate = threading.Event()
    ask(store, busy, T0, uid="other")
    first = ask(store, edits, T0, fingerprint="f1")
    second = ask(store, edits, T0 + 1, fingerprint="f2")
    last = ask(store, edits, T0 + 2, fingerprint="f3")
    assert first.running is not None and first.running.cancelled()
    assert second.running is not None and second.running.cancelled()
    busy.gate.set()
    store.wait("u1", timeout=5)
    assert last.running is not None and not last.running.cancelled()
    assert edits.handed == [None]  # the last spec's fit alone ran


def test_shutdown_does_not_wait_for_a_running_fit_and_cancels_the_queued(
    store: ModelStore,
) -> None:
    """A stopping operator does not wait out a fit of several seconds: ``shutdown`` returns at
    once, and fits still queued behind it never start."""
    busy, queued = Fits(), Fits()
    busy.gate = threading.Event()
    ask(store, busy, T0, uid="a")
    waiting = ask(store, queued, T0, uid="b")
    started = time.monotonic()
    store.shutdown()
    assert time.monotonic() - started < 2.0
    busy.gate.set()
    assert waiting.running is not None and waiting.running.cancelled()
    assert queued.handed == []


def test_a_store_shut_down_fits_again_when_asked(store: ModelStore) -> None:
    """An operator stopped and started again (``start`` after ``stop``) fits in a new pool."""
    fits = Fits()
    ask(store, fits, T0)
    store.wait("u1", timeout=5)
    assert ask(store, fits, T0 + 1).fitted is not None
    store.shutdown()
    assert ask(store, fits, T0 + 901).running is not None
    store.wait("u1", timeout=5)
    assert ask(store, fits, T0 + 902).fitted.name == "fit-2"


def _fitted(errors: list[float], declared: Any = None) -> Any:
    fitted = SimpleNamespace(calibration=SimpleNamespace(point_errors=np.asarray(errors)))
    if declared is not None:
        fitted.error = declared
    return fitted


@pytest.mark.parametrize(
    ("fitted", "steps", "expected"),
    [
        pytest.param(_fitted([0.1, 0.2, 0.6]), None, 0.3, id="all-leads"),
        pytest.param(_fitted([0.1, 0.2, 0.6]), 2, 0.15, id="first-leads"),
        pytest.param(_fitted([0.1, 0.2], declared=0.05), None, 0.05, id="declared-wins"),
        pytest.param(_fitted([0.1, 0.2], declared=float("nan")), None, 0.15, id="declared-nan"),
        pytest.param(_fitted([]), None, None, id="no-errors"),
    ],
)
def test_a_fit_s_error_is_its_own_backtest_s_unless_it_declares_one(
    fitted: Any, steps: int | None, expected: float | None
) -> None:
    """The error the status reports: the mean of the point's errors over the first ``steps``
    leads; a model that declares its own (``auto``'s chosen backtest) is taken at its word
    unless that is not a number; no errors yet is no figure, not NaN."""
    error = fit_error(fitted, steps=steps)
    if expected is None:
        assert error is None
    else:
        assert error == pytest.approx(expected)
