"""Draws docs/baselines.png: each trace's tidal and predictive policies against the HPA, from
a ``tidal backtest --json`` report that ran all three.

Not a test and not a benchmark: a picture for docs/backtest.md. Each trace is a pair of points,
tidal's and the predictive HPA's, at their cloud replica-hours over the HPA's (across) and
their unserved load over the HPA's (up, on a log scale, with the 1e-6 the planner issue adds to
every fraction), joined by a line; the geometric means are the larger marks. Down and to the
left is better on both. Usage (repository root):

    python -m controller backtest ../shared/traces/*.csv --json \\
        --policies tidal,hpa,oracle,predictive > report.json
    python bench/plot_baselines.py report.json [OUT.png]
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

from bench_backtest import save_figure

from controller.backtest import summary, unserved_ratio

EPS = 1e-6
POLICIES = (("tidal", "#4c72b0", "o"), ("predictive", "#dd8452", "s"))


def _as_tidal(report: dict[str, Any], policy: str) -> dict[str, Any]:
    """``report``'s traces where ``policy`` and the HPA ran, with ``policy`` in tidal's place,
    so that :func:`summary` and :func:`unserved_ratio` give its ratios to the HPA."""
    return {
        "traces": {
            name: {**trace, "tidal": trace[policy]}
            for name, trace in report["traces"].items()
            if {"hpa", policy} <= set(trace)
        }
    }


def ratios(report: dict[str, Any], policy: str) -> dict[str, tuple[float, float]]:
    """``{trace: (cloud ratio, unserved ratio)}`` of ``policy`` against the HPA, over the
    traces where both ran and the HPA paid some cloud."""
    return {
        name: (
            trace["tidal"]["cloud_replica_hours"] / trace["hpa"]["cloud_replica_hours"],
            unserved_ratio(trace, EPS),
        )
        for name, trace in _as_tidal(report, policy)["traces"].items()
        if trace["hpa"]["cloud_replica_hours"] > 0
    }


def geometric_means(report: dict[str, Any], policy: str) -> tuple[float, float]:
    """The cloud and unserved ratios' geometric means of ``policy`` against the HPA."""
    s = summary(_as_tidal(report, policy), EPS)
    return s["cloud_hours_ratio_geomean"], s["unserved_ratio_geomean"]


def main(argv: list[str]) -> int:
    if not argv or {"-h", "--help"} & set(argv):
        print(__doc__)
        return 0 if argv else 2
    report = json.loads(Path(argv[0]).read_text())
    out = Path(argv[1] if len(argv) > 1 else "docs/baselines.png")
    points = {policy: ratios(report, policy) for policy, _, _ in POLICIES}
    if not points["tidal"] or not points["predictive"]:
        print(f"{argv[0]}: no trace ran tidal, the HPA and the predictive policy", file=sys.stderr)
        return 2

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    for name in points["tidal"].keys() & points["predictive"].keys():
        (x0, y0), (x1, y1) = points["tidal"][name], points["predictive"][name]
        ax.plot([x0, x1], [y0, y1], color="#bbbbbb", lw=1, zorder=1)
        ax.annotate(name, (x0, y0), textcoords="offset points", xytext=(6, 4), fontsize=8)
    for policy, colour, marker in POLICIES:
        xs, ys = zip(*points[policy].values(), strict=True)
        ax.scatter(xs, ys, color=colour, marker=marker, label=policy, zorder=2)
        gx, gy = geometric_means(report, policy)
        ax.scatter([gx], [gy], color=colour, marker=marker, s=160, edgecolor="black", zorder=3)
        ax.annotate(
            f"{policy}, geometric mean ({gx:.3f}, {gy:.4g})",
            (gx, gy),
            textcoords="offset points",
            xytext=(8, -12),
            fontsize=8,
            color=colour,
        )
    ax.axvline(1.0, color="#999999", lw=0.8, ls=":")
    ax.axhline(1.0, color="#999999", lw=0.8, ls=":")
    ax.set_yscale("log")
    ax.set_xlabel("cloud replica-hours / the HPA's")
    ax.set_ylabel(f"unserved load / the HPA's (each + {EPS:g})")
    ax.set_title("Tidal and a predictive HPA blind to the tiers, each against the HPA")
    ax.legend(loc="lower right")
    low = min(y for p in points.values() for _, y in p.values())
    ax.set_ylim(10 ** math.floor(math.log10(low)), 10.0)
    save_figure(fig, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
