"""SIGTERM and SIGINT to a real ``tidal backtest`` / ``tidal forecast`` with worker processes.

SIGTERM (what ``timeout``, a CI cancel or a Kubernetes Job sends, to the parent alone) ends
the command as Ctrl-C does: one line, exit code 143 (128 + SIGTERM), and no worker or Manager
process left behind. SIGINT to the parent alone ends the replays under way at once, not when
they are done.
"""

from __future__ import annotations

import math
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

START = 1_577_836_800.0  # 2020-01-01T00:00:00Z
#: Longest wait for a command to start its workers (a loaded machine imports slowly).
STARTED_WITHIN = 60.0
#: Longest wait for the command to end once signalled: its workers and Manager end with it.
ENDED_WITHIN = 15.0
#: Far less than a replay of :func:`_trace`'s days takes, unloaded (about 10 s).
PROMPTLY = 5.0

pytestmark = pytest.mark.skipif(
    not Path(f"/proc/self/task/{os.getpid()}/children").exists(),
    reason="reads the processes' children from /proc",
)


def _trace(path: Path, *, days: int, step: int, noise: bool = False) -> Path:
    """A daily wave, ``step`` seconds apart, over ``days`` days (noisy: the fits work)."""
    rows = []
    for i in range(days * 86400 // step):
        load = 100 + 50 * math.sin(2 * math.pi * i * step / 86400)
        if noise:
            load += 8 * math.sin(i * 12.9898) * math.cos(i * 78.233)
        when = datetime.fromtimestamp(START + step * i, UTC)
        rows.append(f"{when:%Y-%m-%dT%H:%M:%SZ},{load:.1f}")
    path.write_text("timestamp,load\n" + "\n".join(rows) + "\n")
    return path


def _started(pid: int) -> str | None:
    """The process's start time (its identity with its PID), or None once it is gone or a
    zombie (dead, waiting to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else fields[19]


def _descendants(pid: int) -> dict[int, str]:
    """The processes under ``pid`` now, each with its start time."""
    found: dict[int, str] = {}
    parents = [pid]
    while parents:
        parent = parents.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                started = _started(child)
                if started is not None and child not in found:
                    found[child] = started
                    parents.append(child)
    return found


def _alive(processes: dict[int, str]) -> list[int]:
    return [pid for pid, started in processes.items() if _started(pid) == started]


class _Command:
    """``python -m controller ARGS`` in its own session, its stderr read line by line."""

    def __init__(self, *args: str) -> None:
        # SIGINT as a shell's foreground command has it, even where the tests run with it
        # ignored (a background job): Python raises KeyboardInterrupt for it.
        code = (
            "import runpy, signal, sys; "
            "signal.signal(signal.SIGINT, signal.default_int_handler); "
            "sys.argv = ['tidal', *sys.argv[1:]]; "
            "runpy.run_module('controller', run_name='__main__')"
        )
        self.process = subprocess.Popen(
            [sys.executable, "-c", code, *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.err: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.seen: dict[int, str] = {}

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.put(line)

    def _take_lines(self, timeout: float) -> None:
        try:
            self.err.append(self.lines.get(timeout=timeout))
            while True:
                self.err.append(self.lines.get_nowait())
        except queue.Empty:
            pass

    def wait_for(self, ready: Callable[[], bool]) -> None:
        """Until ``ready()``, noting every process under the command meanwhile."""
        deadline = time.monotonic() + STARTED_WITHIN
        while not ready():
            assert self.process.poll() is None, f"ended early: {''.join(self.err)}"
            assert time.monotonic() < deadline, f"not started: {''.join(self.err)}"
            self._take_lines(0.05)
            self.seen.update(_descendants(self.process.pid))
        self.seen.update(_descendants(self.process.pid))

    def signal(self, signum: int) -> tuple[int, float]:
        """Send ``signum`` to the command alone; its exit code and the seconds it took."""
        self.seen.update(_descendants(self.process.pid))
        sent = time.monotonic()
        self.process.send_signal(signum)
        code = self.process.wait(timeout=ENDED_WITHIN)
        took = time.monotonic() - sent
        self._take_lines(0.5)
        return code, took

    def survivors(self) -> list[int]:
        """The processes seen under the command still alive a moment after it ended (the
        resource tracker ends once it reads its parent gone)."""
        deadline = time.monotonic() + 3.0
        while _alive(self.seen) and time.monotonic() < deadline:
            time.sleep(0.05)
        return _alive(self.seen)

    def end(self) -> None:
        """Whatever is left of what this test started, ended."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for pid in _alive(self.seen):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def command() -> Iterator[Callable[..., _Command]]:
    started: list[_Command] = []

    def start(*args: str) -> _Command:
        started.append(_Command(*args))
        return started[-1]

    yield start
    for each in started:
        each.end()


@pytest.fixture(scope="module")
def minutes(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Two traces a replay takes seconds on (eight days of minutes)."""
    folder = tmp_path_factory.mktemp("minutes")
    return [str(_trace(folder / f"{name}.csv", days=8, step=60)) for name in ("a", "b")]


def _replaying(run: _Command, count: int) -> Callable[[], bool]:
    return lambda: sum("replaying" in line for line in run.err) >= count


def test_sigterm_ends_a_parallel_backtest_and_its_workers_as_ctrl_c_does(
    command: Callable[..., _Command], minutes: list[str]
) -> None:
    """Exit code 143 (128 + SIGTERM), one line saying so, no traceback, and no worker, Manager
    or resource tracker left running (they were, orphaned, for 40 s and more)."""
    run = command("backtest", *minutes, "--jobs", "2", "--policies", "tidal")
    run.wait_for(_replaying(run, 2))
    assert len(run.seen) >= 3  # the Manager and two workers at least
    code, _ = run.signal(signal.SIGTERM)
    assert code == 143, "".join(run.err)
    assert run.err[-1] == "terminated\n"
    assert not any("Traceback" in line for line in run.err)
    assert run.survivors() == []


def test_sigint_to_the_backtest_alone_ends_the_replays_under_way_at_once(
    command: Callable[..., _Command], minutes: list[str]
) -> None:
    """Ctrl-C reaches the workers too; SIGINT to the parent alone did not, and the exit
    waited for the replays to end. Now they are ended: exit 130 in far less time than a
    replay takes, nothing left."""
    run = command("backtest", *minutes, "--jobs", "2", "--policies", "tidal")
    run.wait_for(_replaying(run, 2))
    code, took = run.signal(signal.SIGINT)
    assert code == 130, "".join(run.err)
    assert run.err[-1] == "interrupted\n"
    assert took < PROMPTLY
    assert not any("replayed in" in line for line in run.err)
    assert run.survivors() == []


def test_sigterm_ends_a_parallel_forecast_evaluation_and_its_workers(
    command: Callable[..., _Command], tmp_path: Path
) -> None:
    """The accuracy report's workers (forked) and Manager end with it: exit 143."""
    traces = [str(_trace(tmp_path / f"{n}.csv", days=40, step=300, noise=True)) for n in "ab"]
    run = command("forecast", *traces, "--models", "auto", "--jobs", "2", "--json")
    run.wait_for(lambda: len(_descendants(run.process.pid)) >= 3)  # the Manager, 2 workers
    time.sleep(0.5)  # the workers at their evaluations
    code, _ = run.signal(signal.SIGTERM)
    assert code == 143, "".join(run.err)
    assert run.err[-1] == "terminated\n"
    assert run.survivors() == []


@pytest.mark.parametrize("attempt", range(3))
def test_sigterm_as_the_workers_start_leaves_no_traceback_and_nothing_running(
    command: Callable[..., _Command], minutes: list[str], attempt: int
) -> None:
    """SIGTERM the moment the first process under the backtest appears (its Manager or the
    resource tracker, starting): the Manager printed a traceback as its parent went mid-start.
    Now the signal waits for the start to end, and the exit is the usual one line."""
    run = command("backtest", *minutes, "--jobs", "2", "--policies", "tidal")
    run.wait_for(lambda: bool(_descendants(run.process.pid)))
    code, _ = run.signal(signal.SIGTERM)
    run._take_lines(1.0)
    assert code == 143, "".join(run.err)
    assert run.err[-1] == "terminated\n", "".join(run.err)
    assert not any("Traceback" in line for line in run.err), "".join(run.err)
    assert run.survivors() == []


@pytest.mark.parametrize("attempt", range(2))
def test_ctrl_c_to_the_process_group_as_the_workers_start_ends_them_all(
    command: Callable[..., _Command], minutes: list[str], attempt: int
) -> None:
    """A terminal's Ctrl-C goes to the whole group, the Manager and workers starting included:
    the command still ends at once, exit 130 with "interrupted" last, nothing left running. (A
    process it reaches while still importing may print its own traceback before it goes: the
    parent holds the interrupt, a spawned child cannot yet.)"""
    run = command("backtest", *minutes, "--jobs", "2", "--policies", "tidal")
    run.wait_for(lambda: bool(_descendants(run.process.pid)))
    run.seen.update(_descendants(run.process.pid))
    os.killpg(run.process.pid, signal.SIGINT)  # its own session: the group is the command's
    code = run.process.wait(timeout=ENDED_WITHIN)
    run._take_lines(1.0)
    assert code == 130, "".join(run.err)
    assert run.err[-1] == "interrupted\n", "".join(run.err)
    assert not any("replayed in" in line for line in run.err), "".join(run.err)
    assert run.survivors() == []
