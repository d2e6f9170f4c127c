"""Tidal's refits made ahead of the replay (controller.simulator.fits_ahead, and the process
``tidal backtest`` gives the longest trace's refits): the replay plans exactly as if it had
fitted them itself, refits out of step are an error, and a failure on either side is reported
rather than waited on."""

from __future__ import annotations

import contextlib
import io
import json
import pickle
import queue
import threading
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from controller import backtest_command
from controller.backtest import PreparedTrace, load_for_replay, refits_ahead, replay
from controller.backtest_command import (
    _fit_ahead,
    _long_pole,
    _queued_fits,
    _Stopped,
)
from controller.cli import main
from controller.simulator import FitOutcome, PolicyView, Scenario, TidalPolicy
from forecasts.series import LoadSeries, parse_timestamp


@pytest.fixture(scope="module")
def nyc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled New York taxi trace (30-minute samples to 2015-01-16T23:30)."""
    out = tmp_path_factory.mktemp("fits-ahead") / "nyc.csv"
    with resources.as_file(resources.files("controller.data") / "nyc-taxi-30min-local.csv") as p:
        out.write_text(Path(p).read_text())
    return out


def _prepared(path: Path, score_from: str, name: str | None = None) -> PreparedTrace:
    return load_for_replay(
        path, scenario=Scenario(), score_from=parse_timestamp(score_from), name=name
    )


def test_a_replay_given_the_refits_made_ahead_plans_as_if_it_fitted_them(nyc: Path) -> None:
    """Eleven and a half hours of New York taxi, replayed fitting as it goes and replayed on the refits
    :func:`refits_ahead` made beforehand: every policy's every minute is the same, tidal's
    forecasts too, and so are the refits counted."""
    trace = _prepared(nyc, "2015-01-16T12:00:00")
    fitted = replay(trace, scenario=Scenario())
    made = list(refits_ahead(trace, scenario=Scenario()))
    # 12:00 to the last sample, 23:30: 691 minutes, a refit every 15 of them.
    assert len(made) == fitted.results["tidal"].refits == 47
    assert all(outcome.fitted is not None for outcome in made)
    # They cross processes as bytes: replay on copies, not on the objects fitted here.
    copies = iter([pickle.loads(pickle.dumps(outcome)) for outcome in made])
    given = replay(trace, scenario=Scenario(), fits=copies)
    assert next(copies, None) is None
    for name, result in fitted.results.items():
        other = given.results[name]
        for column in ("ready_physical", "ready_cloud", "cloud_nodes", "placeholders"):
            assert np.array_equal(getattr(result, column), getattr(other, column)), (name, column)
        assert result.replicas_removed == other.replicas_removed
    tidal, other = fitted.results["tidal"], given.results["tidal"]
    assert np.array_equal(tidal.forecast_upper, other.forecast_upper)
    assert (tidal.refits, tidal.reasons) == (other.refits, other.reasons)


def _view(now: float) -> PolicyView:
    load = LoadSeries(0.0, 60.0, np.full(int(now // 60) + 1, 1000.0))
    return PolicyView(
        now=now,
        history=load,
        physical_replicas=2,
        cloud_replicas=0,
        physical_capacity=60,
        reserved=0,
        physical_ready=2,
        cloud_ready=0,
    )


@pytest.mark.parametrize(
    ("fits", "error"),
    [
        ([], "the refits made ahead ran out at 6000.0"),
        ([FitOutcome(5940.0, None, "no history")], "one made for 5940.0 came at 6000.0"),
    ],
    ids=["ran-out", "out-of-step"],
)
def test_refits_that_do_not_match_the_replay_are_an_error(
    fits: list[FitOutcome], error: str
) -> None:
    """A policy never plans on a refit made for another minute, nor goes on without one."""
    trace_spec = _prepared_spec()
    policy = TidalPolicy(trace_spec, Scenario(), iter(fits))
    with pytest.raises(RuntimeError, match=error):
        policy(100, _view(6000.0))


def _prepared_spec() -> Any:
    from controller.backtest import backtest_spec

    return backtest_spec("t", scenario=Scenario())


def test_a_refit_that_failed_is_planned_on_as_one_made_here() -> None:
    """A refit with no model (a forecast error) is taken as such: the plan falls back and
    says why, as it does when the error happens in the replay's own process."""
    policy = TidalPolicy(
        _prepared_spec(), Scenario(), iter([FitOutcome(6000.0, None, "too short")])
    )
    policy(100, _view(6000.0))
    assert policy.refits == 1 and policy.fitted is None
    assert policy.last_plan is not None and policy.last_plan.forecast_problem == "too short"


def _trace_of(minutes: int, name: str) -> PreparedTrace:
    load = LoadSeries(0.0, 60.0, np.ones(minutes + 10))
    return PreparedTrace(name, name, load, 600.0, 0.0, 0.0)


@pytest.mark.parametrize(
    ("minutes", "jobs", "policies", "pole"),
    [
        ((300, 100, 100), 2, ("tidal", "hpa"), "a"),  # 300 of 500 is over half
        ((200, 200, 100), 2, ("tidal",), None),  # an even share: no core waits on it
        ((300, 100, 100), 4, ("tidal",), "a"),  # over a quarter
        ((300, 100, 100), 1, ("tidal",), None),  # no second process to make them in
        ((300,), 2, ("tidal",), None),  # one trace replays in this process
        ((300, 100, 100), 2, ("hpa", "oracle"), None),  # no refits to make
    ],
)
def test_the_long_pole_is_the_trace_longer_than_an_even_share(
    minutes: tuple[int, ...], jobs: int, policies: tuple[str, ...], pole: str | None
) -> None:
    traces = [_trace_of(m, name) for m, name in zip(minutes, "abc", strict=False)]
    assert _long_pole(traces, jobs, policies) == pole


class _Flag:
    def __init__(self) -> None:
        self.event = threading.Event()

    def is_set(self) -> bool:
        return self.event.is_set()

    def set(self) -> None:
        self.event.set()


def test_the_refits_are_put_on_the_queue_then_done(
    nyc: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """:func:`_fit_ahead` puts each refit as bytes, then says it is done; the replay's side
    takes them back in order and stops there."""
    made = [FitOutcome(60.0 * i, None, f"refit {i}") for i in range(3)]
    monkeypatch.setattr(backtest_command, "refits_ahead", lambda *a, **k: iter(made))
    fits: queue.Queue[Any] = queue.Queue()
    _fit_ahead(_trace_of(10, "a"), Scenario(), "auto", {}, fits, _Flag())
    items = [fits.get_nowait() for _ in range(4)]
    assert [kind for kind, _ in items] == ["fit", "fit", "fit", "done"]
    for kind, payload in items:
        fits.put((kind, payload))
    assert list(_queued_fits(fits, _Flag())) == made


def test_a_refit_that_raises_is_reported_to_the_replay(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug in the refits made ahead ends the replay waiting on them with its error, not a
    hang."""

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        yield FitOutcome(0.0, None, "first")
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(backtest_command, "refits_ahead", broken)
    fits: queue.Queue[Any] = queue.Queue()
    _fit_ahead(_trace_of(10, "a"), Scenario(), "auto", {}, fits, _Flag())
    taken = _queued_fits(fits, _Flag())
    assert next(taken) == FitOutcome(0.0, None, "first")
    with pytest.raises(RuntimeError, match="refits made ahead failed: ZeroDivisionError: a bug"):
        next(taken)


def test_either_side_gives_up_once_the_run_is_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    """Another trace failed: the replay waiting on an empty queue stops, and the process
    making refits for a full queue gives up instead of blocking."""
    stop = _Flag()
    stop.set()
    with pytest.raises(_Stopped):
        next(_queued_fits(queue.Queue(), stop))
    monkeypatch.setattr(
        backtest_command, "refits_ahead", lambda *a, **k: iter([FitOutcome(0.0, None, "x")] * 9)
    )
    full: queue.Queue[Any] = queue.Queue(maxsize=2)
    _fit_ahead(_trace_of(10, "a"), Scenario(), "auto", {}, full, stop)
    assert full.empty()


def test_a_parallel_backtest_with_refits_made_ahead_reports_the_same(
    nyc: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two cuts of New York taxi, one scoring half a day and one two hours: in two processes
    the longer one's refits are made in a third, and the report is the same, to the byte, as
    one process replaying both."""

    def backtest(jobs: str) -> tuple[str, str]:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = main(
                [
                    "backtest",
                    str(nyc),
                    str(short),
                    "--json",
                    "--jobs",
                    jobs,
                    "--score-from",
                    "2015-01-16T12:00:00",
                ]
            )
        assert code == 0
        return out.getvalue(), capsys.readouterr().err

    short = nyc.with_name("nyc-evening.csv")
    lines = nyc.read_text().splitlines()
    short.write_text("\n".join(lines[:-20]) + "\n")  # ends at 13:30: two hours scored
    alone, err_alone = backtest("1")
    ahead, err_ahead = backtest("2")
    assert "refits made ahead" not in err_alone
    assert "nyc: tidal's refits made ahead, in a process of their own" in err_ahead
    assert ahead == alone
    assert set(json.loads(ahead)["traces"]) == {"nyc", "nyc-evening"}
