"""``PassReads``: within one pass of the loop, a Prometheus found unreachable is not asked again."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from controller.operator.prometheus_source import PrometheusSlow
from controller.operator.sources import (
    MetricsUnavailable,
    PassReads,
    PrometheusUnreachable,
)
from forecasts.series import LoadSeries


class Scripted:
    """A load source that fails as told per query and records what it was asked."""

    def __init__(self, failures: dict[str, MetricsUnavailable]) -> None:
        self.failures = failures
        self.asked: list[str] = []

    def read_history(self, query: str, *, start: float, end: float, step: float) -> LoadSeries:
        self.asked.append(query)
        if query in self.failures:
            raise self.failures[query]
        return LoadSeries(start, step, np.ones(3))


def read(reads: PassReads, query: str) -> LoadSeries:
    return reads.read_history(query, start=0, end=120, step=60)


def test_unreachable_once_is_unreachable_for_the_rest_of_the_pass() -> None:
    source = Scripted({"a": PrometheusUnreachable("no answer within 1s", query="a")})
    reads = PassReads(source)
    reads.begin_pass()
    with pytest.raises(PrometheusUnreachable):
        read(reads, "a")
    with pytest.raises(PrometheusUnreachable) as error:
        read(reads, "b")
    assert error.value.query == "b" and error.value.reason == "MetricsUnavailable"
    assert str(error.value) == "query 'b' was not sent: earlier in this pass, no answer within 1s"
    assert source.asked == ["a"]

    # Reads off the loop (the fits) still ask, and do not mark the pass.
    off_loop: list[object] = []
    thread = threading.Thread(target=lambda: off_loop.append(read(reads, "b")))
    thread.start()
    thread.join()
    assert isinstance(off_loop[0], LoadSeries) and source.asked == ["a", "b"]
    reads.end_pass()

    # The next pass asks again.
    reads.begin_pass()
    assert len(read(reads, "b")) == 3
    reads.end_pass()
    assert source.asked == ["a", "b", "b"]


def test_other_failures_do_not_stop_the_pass() -> None:
    """No data, a rejected query, Prometheus's own time-out: only that object is affected."""
    source = Scripted({"a": MetricsUnavailable("query timed out", query="a")})
    reads = PassReads(source)
    reads.begin_pass()
    with pytest.raises(MetricsUnavailable):
        read(reads, "a")
    assert len(read(reads, "b")) == 3
    reads.end_pass()


def test_reads_outside_a_pass_are_not_stopped() -> None:
    source = Scripted({"a": PrometheusUnreachable("refused", query="a")})
    reads = PassReads(source)
    for _ in range(2):
        with pytest.raises(PrometheusUnreachable):
            read(reads, "a")
    assert source.asked == ["a", "a"]


def test_a_read_after_the_pass_ended_is_sent() -> None:
    """Once the pass that found Prometheus unreachable has ended, a read on the same thread
    outside any pass (a command's one-off read, say) is sent, not failed from memory."""
    source = Scripted({"a": PrometheusUnreachable("refused", query="a")})
    reads = PassReads(source)
    reads.begin_pass()
    with pytest.raises(PrometheusUnreachable):
        read(reads, "a")
    reads.end_pass()
    assert len(read(reads, "b")) == 3
    assert source.asked == ["a", "b"]


class Answering(Scripted):
    """A scripted source whose Prometheus answers a query that costs nothing, or not."""

    def __init__(self, failures: dict[str, MetricsUnavailable], *, answers: bool) -> None:
        super().__init__(failures)
        self._answers = answers
        self.probed = 0

    def answers(self) -> bool:
        self.probed += 1
        return self._answers


def test_a_query_too_slow_fails_alone_where_prometheus_answers_others() -> None:
    """A read that connected and got no answer in time, from a Prometheus that answers a
    trivial query: only that object fails (MetricsUnavailable, not unreachable, naming the
    timeout's variable); the pass's other objects are still read."""
    slow = PrometheusSlow("is slow or unreachable for query 'a': no answer within 3s", query="a")
    source = Answering({"a": slow}, answers=True)
    reads = PassReads(source)
    reads.begin_pass()
    with pytest.raises(MetricsUnavailable) as error:
        read(reads, "a")
    assert not isinstance(error.value, PrometheusUnreachable)
    assert error.value.query == "a" and error.value.transient
    assert "TIDAL_PROMETHEUS_TIMEOUT" in str(error.value) and "no answer within 3s" in str(
        error.value
    )
    assert len(read(reads, "b")) == 3
    assert source.asked == ["a", "b"] and source.probed == 1
    reads.end_pass()


def test_a_slow_read_from_a_prometheus_that_answers_nothing_ends_the_pass_s_reads() -> None:
    """The same read, and the trivial query unanswered too (or a source that cannot ask one):
    unreachable for the rest of the pass, as before."""
    for source in (
        Answering({"a": PrometheusSlow("no answer within 3s", query="a")}, answers=False),
        Scripted({"a": PrometheusSlow("no answer within 3s", query="a")}),
    ):
        reads = PassReads(source)
        reads.begin_pass()
        with pytest.raises(PrometheusSlow):
            read(reads, "a")
        with pytest.raises(PrometheusUnreachable, match="was not sent"):
            read(reads, "b")
        assert source.asked == ["a"]
        reads.end_pass()


def test_a_slow_read_off_the_loop_asks_nothing_more() -> None:
    """A fit's read (off the loop) that is slow is raised as it is: no probe, no mark."""
    source = Answering({"a": PrometheusSlow("no answer within 3s", query="a")}, answers=True)
    reads = PassReads(source)
    reads.begin_pass()
    failed: list[BaseException] = []

    def fit() -> None:
        try:
            read(reads, "a")
        except MetricsUnavailable as exc:
            failed.append(exc)

    thread = threading.Thread(target=fit)
    thread.start()
    thread.join()
    assert type(failed[0]) is PrometheusSlow and source.probed == 0
    assert len(read(reads, "b")) == 3
    reads.end_pass()
