"""The repository's own files as tests read them: kustomize builds and the e2e scenarios."""

from __future__ import annotations

import functools
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


@functools.cache
def kustomize(path: str) -> tuple[dict[str, Any], ...]:
    """``kubectl kustomize`` of a directory of the repository (relative to its root); skips
    the test when kubectl is not installed."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip(f"kubectl is not installed: `kubectl kustomize` builds {path}")
    result = subprocess.run(
        [kubectl, "kustomize", str(REPO / path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, f"kubectl kustomize {path}: {result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def e2e_cluster() -> Any:
    """e2e/cluster.py (the kind tests' scenarios and helpers), imported once under a name of its
    own: e2e/ is not a package."""
    name = "tidal_e2e_cluster"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "e2e" / "cluster.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def bench_script(name: str) -> Any:
    """bench/NAME.py imported as the scripts run it, with bench/ on the path while it loads
    (it imports its sibling ``bench_backtest``): bench/ is not a package."""
    bench = REPO / "bench"
    sys.path.insert(0, str(bench))
    try:
        spec = importlib.util.spec_from_file_location(name, bench / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(bench))
    return module
