"""The kind end-to-end tests (`make e2e`, see e2e/e2e.mk).

Every test here needs a running Docker engine, kind, kubectl and the `tidal-e2e` cluster that
`make e2e` creates; without them each test is skipped with a message naming what is missing, so
`pytest --collect-only e2e` still collects them all.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from cluster import missing_prerequisite


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    e2e_items = [item for item in items if here in Path(str(item.path)).parents]
    for item in e2e_items:
        item.add_marker(pytest.mark.e2e)
    if not e2e_items:
        return
    reason = missing_prerequisite()
    if reason is not None:
        skip = pytest.mark.skip(reason=f"e2e needs Docker, kind and the cluster: {reason}")
        for item in e2e_items:
            item.add_marker(skip)
