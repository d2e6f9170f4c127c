"""The errors' contracts callers rely on: each operator error's condition reason and whether it
is retried, a bad trace catchable as a ValueError, and the model registry's unknown names."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.operator.errors import (
    ClusterUnavailable,
    Conflict,
    InvalidSpec,
    KubeconfigInvalid,
    OperatorError,
    PhysicalCapacityUnknown,
    PlaceholderConflict,
    TargetConflict,
    TargetMissing,
)
from controller.operator.kube import api_client_from_settings
from controller.operator.settings import OperatorSettings
from forecasts import ForecastError, TraceFormatError, UnknownModel, create, model_names
from forecasts.series import load_trace


@pytest.mark.parametrize(
    ("kind", "reason", "transient"),
    [
        pytest.param(OperatorError, "Error", False, id="base"),
        pytest.param(InvalidSpec, "InvalidSpec", False, id="invalid-spec"),
        pytest.param(TargetMissing, "TargetMissing", False, id="target-missing"),
        pytest.param(TargetConflict, "TargetConflict", False, id="target-conflict"),
        pytest.param(PlaceholderConflict, "PlaceholderConflict", False, id="placeholder"),
        pytest.param(PhysicalCapacityUnknown, "PhysicalCapacityUnknown", False, id="capacity"),
        pytest.param(ClusterUnavailable, "KubernetesUnavailable", True, id="cluster"),
        pytest.param(Conflict, "Conflict", True, id="conflict"),
        pytest.param(KubeconfigInvalid, "KubeconfigInvalid", False, id="kubeconfig"),
    ],
)
def test_each_operator_error_says_its_reason_and_retry(
    kind: type[OperatorError], reason: str, transient: bool
) -> None:
    """Only an unavailable API and a write conflict may pass on a retry; every other error needs
    a human. Only a 409 is a Conflict (what a writer retries on a fresh read)."""
    error = kind("what went wrong")
    assert (error.reason, error.transient, str(error)) == (reason, transient, "what went wrong")
    assert isinstance(error, Conflict) is (kind is Conflict)


def test_an_unloadable_kubeconfig_is_permanent(tmp_path: Path) -> None:
    """A kubeconfig that cannot be loaded is not retried: it needs its flag or file fixed."""
    missing = tmp_path / "nowhere" / "config"
    with pytest.raises(KubeconfigInvalid) as error:
        api_client_from_settings(OperatorSettings(kubeconfig=str(missing)))
    assert error.value.transient is False
    assert error.value.reason == "KubeconfigInvalid"


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("time,load\n2020-01-01T00:00:00Z,1\n", id="bad-header"),
        pytest.param("timestamp,load\n2020-01-01T00:00:00Z,lots\n", id="bad-load"),
    ],
)
def test_a_bad_trace_is_a_value_error_and_a_forecast_error(tmp_path: Path, text: str) -> None:
    """A trace that does not follow ``timestamp,load`` can be caught as a ValueError (bad input)
    as well as a ForecastError, naming the file."""
    trace = tmp_path / "bad.csv"
    trace.write_text(text)
    with pytest.raises(ValueError, match=str(trace)) as error:
        load_trace(trace)
    assert isinstance(error.value, TraceFormatError)
    assert isinstance(error.value, ForecastError)


def test_an_unknown_model_lists_the_known_ones() -> None:
    """An unknown model name is a LookupError that names it and every registered model, in
    registration order."""
    with pytest.raises(LookupError) as error:
        create("prophet")
    assert isinstance(error.value, UnknownModel)
    assert str(error.value) == (
        f"unknown forecast model 'prophet'; known models: {', '.join(model_names())}"
    )
    assert model_names() == ["auto", "holt-winters", "mstl", "seasonal-naive"]
