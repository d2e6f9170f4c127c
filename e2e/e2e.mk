# kind end-to-end tests. Included from the top-level Makefile:  include e2e/e2e.mk
#   make e2e        create the cluster, build and load the images, install Prometheus, Tidal
#                   (manifests/overlays/e2e), the samples and run pytest e2e (which starts the
#                   replayers and backfills history, one namespace per scenario)
#   make e2e-down   delete the cluster
# Needs docker (a running engine, and buildx: the Dockerfile needs BuildKit), kind and kubectl on
# the PATH: without them `make e2e` says which is missing and exits 0, a skip, as `pytest e2e`
# skips its tests naming what it misses (it builds no image, so it does not ask for buildx); so
# does a missing traces directory (E2E_TRACES, by default the tests' bundled traces), which the
# gateway image copies. The tests run with E2E_PYTHON, which must have Tidal and pytest (`make
# python-deps`): `make e2e` checks that before it creates anything.

E2E_CLUSTER ?= tidal-e2e
E2E_CONTEXT := kind-$(E2E_CLUSTER)
E2E_TRACES ?= $(abspath tests/data/traces)
E2E_KUBECTL := kubectl --context $(E2E_CONTEXT)
E2E_PYTEST_ARGS ?=
# The interpreter `make deps` installed Tidal into (the Makefile's PYTHON, python3 by default).
E2E_PYTHON ?= $(or $(PYTHON),python3)

# What stops the e2e run here, if anything (empty when nothing does).
E2E_MISSING = if ! command -v docker >/dev/null 2>&1; then echo "docker is not on the PATH"; \
	elif ! docker info >/dev/null 2>&1; then echo "the docker engine is not running"; \
	elif ! docker buildx version >/dev/null 2>&1; then \
		echo "docker buildx (BuildKit) is not installed: the Dockerfile needs it"; \
	elif ! command -v kind >/dev/null 2>&1; then echo "kind is not on the PATH"; \
	elif ! command -v kubectl >/dev/null 2>&1; then echo "kubectl is not on the PATH"; \
	elif [ ! -d "$(E2E_TRACES)" ]; then echo "the traces directory $(E2E_TRACES) is missing"; fi

.PHONY: e2e e2e-run e2e-cluster e2e-images e2e-install e2e-test e2e-down

e2e:
	@missing="$$($(E2E_MISSING))"; \
	if [ -n "$$missing" ]; then \
		echo "e2e skipped: e2e needs Docker, kind and kubectl: $$missing"; \
	else \
		$(MAKE) --no-print-directory e2e-run; \
	fi

# In order, also under `make -j`: the images must be loaded before the install rolls out.
e2e-run:
	@$(E2E_PYTHON) -c "import controller, pytest" 2>/dev/null || { \
		echo "e2e: $(E2E_PYTHON) cannot import Tidal and pytest: run 'make python-deps'" \
			"(or set E2E_PYTHON to the interpreter that has them)"; exit 1; }
	$(MAKE) --no-print-directory e2e-cluster
	$(MAKE) --no-print-directory e2e-images
	$(MAKE) --no-print-directory e2e-install
	$(MAKE) --no-print-directory e2e-test

e2e-cluster:
	@missing="$$($(E2E_MISSING))"; [ -z "$$missing" ] || { echo "e2e: $$missing"; exit 1; }
	@# Five kind nodes watch files through one host kernel: kind's known issue "too many open
	@# files" at the kernel's default inotify limits (128 instances; watches by RAM since 5.11).
	@# Only where the host's kernel is the one kind's nodes share (/proc readable here).
	@if [ -r /proc/sys/fs/inotify/max_user_instances ]; then \
		instances=$$(cat /proc/sys/fs/inotify/max_user_instances); \
		watches=$$(cat /proc/sys/fs/inotify/max_user_watches); \
		if [ "$$instances" -lt 512 ] || [ "$$watches" -lt 524288 ]; then \
			echo "e2e: warning: fs.inotify.max_user_instances=$$instances," \
				"max_user_watches=$$watches; kind's nodes may fail with 'too many open files':" \
				"sysctl -w fs.inotify.max_user_instances=512 fs.inotify.max_user_watches=524288"; \
		fi; \
	fi
	kind get clusters | grep -qx '$(E2E_CLUSTER)' || \
		kind create cluster --name $(E2E_CLUSTER) --config e2e/kind-config.yaml --wait 120s

# --provenance=false: with Docker's containerd image store (the default of fresh Docker 29
# installs) BuildKit attaches a provenance attestation that `docker save` leaves out of the
# archive, and `kind load docker-image` then fails with "content digest ... not found"
# (kubernetes-sigs/kind#3795).
# `docker buildx build --load`, not `docker build`: before Docker 23 `docker build` is the
# legacy builder even with the buildx plugin installed, and knows neither flag.
e2e-images:
	docker buildx build --load --provenance=false --target operator -t tidal:e2e .
	docker buildx build --load --provenance=false --target gateway \
		--build-context traces=$(E2E_TRACES) -t tidal-gateway:e2e .
	kind load docker-image --name $(E2E_CLUSTER) tidal:e2e tidal-gateway:e2e

e2e-install:
	$(E2E_KUBECTL) apply -k e2e/manifests/prometheus
	$(E2E_KUBECTL) -n monitoring rollout status deployment/prometheus --timeout=180s
	$(E2E_KUBECTL) apply -k manifests/overlays/e2e
	$(E2E_KUBECTL) wait --for condition=Established crd/gatewayautoscalers.tidal.dev --timeout=60s
	$(E2E_KUBECTL) -n tidal-system rollout status deployment/tidal-operator --timeout=180s

e2e-test:
	TIDAL_E2E_CONTEXT=$(E2E_CONTEXT) TIDAL_E2E_TRACES=$(E2E_TRACES) \
		$(E2E_PYTHON) -m pytest e2e -m e2e -v $(E2E_PYTEST_ARGS)

e2e-down:
	kind delete cluster --name $(E2E_CLUSTER)
