# rackfit operator image. No container engine runs on the project's build machines, so this file is
# checked by tests/e2e/test_packaging.py (the same wheel build and install, in a venv) and
# tests/unit/test_chart.py (user and entrypoint match the chart), not by `docker build`.
#
#   docker build -t rackfit:0.1.0 .
#   docker run --rm rackfit:0.1.0 catalog

# --- build: the wheel, with the package data (catalog/instances.yaml, models/presets.yaml) ---------
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
RUN python -m pip wheel --no-deps --no-cache-dir --wheel-dir /wheels .

# --- runtime: the wheel with the operator extra, as a non-root user ------------------------------
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN groupadd --system --gid 65532 rackfit \
 && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin rackfit
COPY --from=build /wheels/ /tmp/wheels/
RUN set -eu; whl="$(ls /tmp/wheels/rackfit-*.whl)"; \
    python -m pip install "${whl}[operator]"; \
    rm -rf /tmp/wheels; \
    rackfit catalog >/dev/null
USER 65532:65532
# 8080 kopf liveness (/healthz), 9090 Prometheus metrics, 9443 admission webhooks (TLS)
EXPOSE 8080 9090 9443
ENTRYPOINT ["rackfit"]
CMD ["operator"]
