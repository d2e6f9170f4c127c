# syntax=docker/dockerfile:1.6
# Tidal's images, built with BuildKit (the default builder of Docker 23+):
#   docker build -t tidal:0.1.0 .                           # the operator (`tidal run`)
#   docker build --target gateway \
#     --build-context traces=tests/data/traces -t tidal-gateway:0.1.0 .
# (any folder of traces will do: `make e2e` passes E2E_TRACES, by default the bundled two)
# The gateway image runs the sample gateway (its entry point) and the trace replayer
# (`python -m controller.demo_gateway.replayer`), and carries the real traces with their
# licence notices, which must travel with the data.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md* ./
COPY controller ./controller
COPY forecasts ./forecasts
# The package and every dependency as wheels, so that the runtime stage needs no compiler.
RUN pip wheel --wheel-dir /wheels .

FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels tidal-autoscaler \
 && groupadd --gid 10001 tidal \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin tidal
# Numeric, so that Kubernetes can verify runAsNonRoot without reading /etc/passwd.
USER 10001:10001
WORKDIR /tmp

FROM runtime AS gateway
COPY --from=traces *.csv *.txt *.html README.md /opt/tidal/traces/
EXPOSE 8081
ENTRYPOINT ["python", "-m", "controller.demo_gateway.server"]

# Last, so that a plain `docker build .` makes the operator image.
FROM runtime AS operator
EXPOSE 8080
ENTRYPOINT ["tidal"]
CMD ["run"]
