"""The baselines picture (``bench/plot_baselines.py``): its points are the report's ratios."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import ModuleType

import pytest

from tests.support.repository import bench_script


def _module() -> ModuleType:
    module: ModuleType = bench_script("plot_baselines")
    return module


def _m(unserved: float, cloud: float) -> dict[str, float | int]:
    return {
        "unserved_fraction": unserved,
        "underprovisioned_minutes": 0,
        "cloud_replica_hours": cloud,
        "physical_replica_hours": 1.0,
        "replicas_removed": 1,
    }


REPORT = {
    "traces": {
        "a": {"tidal": _m(0.001, 12.0), "hpa": _m(0.01, 10.0), "predictive": _m(0.002, 20.0)},
        "b": {"tidal": _m(0.0, 5.0), "hpa": _m(0.001, 4.0), "predictive": _m(0.0, 6.0)},
        "no-cloud": {"tidal": _m(0.0, 1.0), "hpa": _m(0.0, 0.0), "predictive": _m(0.0, 1.0)},
    }
}


def test_each_policy_s_points_are_its_ratios_to_the_hpa() -> None:
    plot = _module()
    tidal = plot.ratios(REPORT, "tidal")
    predictive = plot.ratios(REPORT, "predictive")
    assert set(tidal) == set(predictive) == {"a", "b"}  # the HPA paid no cloud on "no-cloud"
    assert tidal["a"] == pytest.approx((1.2, (0.001 + 1e-6) / (0.01 + 1e-6)))
    assert predictive["b"] == pytest.approx((1.5, 1e-6 / (0.001 + 1e-6)))
    cloud, unserved = plot.geometric_means(REPORT, "predictive")
    assert cloud == pytest.approx(math.sqrt(2.0 * 1.5))
    # Every trace's unserved ratio counts, the one without the HPA's cloud too (1 there).
    a, b = (0.002 + 1e-6) / (0.01 + 1e-6), 1e-6 / (0.001 + 1e-6)
    assert unserved == pytest.approx((a * b * 1.0) ** (1 / 3))


def test_it_draws_a_report_and_refuses_one_without_the_predictive_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plot = _module()
    report = tmp_path / "report.json"
    report.write_text(json.dumps(REPORT))
    out = tmp_path / "baselines.png"
    assert plot.main([str(report), str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    without = {
        "traces": {n: {"tidal": t["tidal"], "hpa": t["hpa"]} for n, t in REPORT["traces"].items()}
    }
    report.write_text(json.dumps(without))
    assert plot.main([str(report), str(tmp_path / "none.png")]) == 2
    assert "no trace ran tidal, the HPA and the predictive policy" in capsys.readouterr().err
    assert not (tmp_path / "none.png").exists()
