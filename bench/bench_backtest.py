"""Benchmark: the whole backtest over the shared traces, timed, with the acceptance ratios.

Not a test: it prints what it measured. Usage (from the repository root):

    python bench/bench_backtest.py [TRACE.csv ...] [-- extra tidal backtest flags]
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from controller.backtest import summary, unserved_ratio

EPS = 1e-6


def shared_traces() -> list[str]:
    """The traces beside the repository (run from its root)."""
    return sorted(str(p) for p in Path("../shared/traces").glob("*.csv"))


def save_figure(fig: Any, out: Path) -> None:
    """Lay ``fig`` out, write it to ``out`` (its directory made if need be), close it, and say
    where it went."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    print(f"wrote {out}")


def backtest_json(traces: list[str], extra: list[str]) -> str:
    """``tidal backtest TRACES --json EXTRA``, run as the command line runs it; its stdout.

    Its progress and warnings go to this process's stderr as they come."""
    done = subprocess.run(
        [sys.executable, "-m", "controller", "backtest", *traces, "--json", *extra],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    return done.stdout


def print_report(report: dict[str, Any]) -> None:
    """The report's traces as a Markdown table, then the acceptance ratios."""
    print(
        "| trace | tidal unserved | hpa unserved | ratio | tidal cloud h | hpa cloud h "
        "| oracle cloud h | ratio | tidal removed | hpa removed |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, p in report["traces"].items():
        t, h, o = p["tidal"], p["hpa"], p["oracle"]
        unserved = unserved_ratio(p, EPS)
        cloud = t["cloud_replica_hours"] / h["cloud_replica_hours"]
        print(
            f"| {name} | {t['unserved_fraction']:.2e} | {h['unserved_fraction']:.2e} "
            f"| {unserved:.4f} | {t['cloud_replica_hours']:.0f} | {h['cloud_replica_hours']:.0f} "
            f"| {o['cloud_replica_hours']:.0f} | {cloud:.3f} | {t['replicas_removed']} "
            f"| {h['replicas_removed']} |"
        )
    s = summary(report, EPS)
    print(
        f"geometric mean of tidal/hpa unserved (eps {EPS:g}): {s['unserved_ratio_geomean']:.4f}; "
        f"worst trace {s['unserved_ratio_max']:.4f}"
    )
    print(f"geometric mean of tidal/hpa cloud replica-hours: {s['cloud_hours_ratio_geomean']:.4f}")
    print(f"replicas removed: tidal {s['tidal_replicas_removed']}, hpa {s['hpa_replicas_removed']}")


def main(argv: list[str]) -> int:
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    if {"-h", "--help"} & set(argv):
        print(__doc__)
        return 0
    traces = argv or shared_traces()
    if not traces:
        print("no traces: pass TRACE.csv files or run from the repository root beside ../shared")
        return 2
    started = time.perf_counter()
    report = json.loads(backtest_json(traces, extra))
    seconds = time.perf_counter() - started
    print(f"tidal backtest over {len(traces)} traces: {seconds:.0f} s wall time")
    print_report(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
