# rackfit operator image. `make image` builds it (tools/image/build.sh): first a wheelhouse on the
# build host, `pip wheel -w .rackfit/wheelhouse '.[operator]'` (rackfit's wheel and every dependency),
# then this file, which installs only from that wheelhouse: no package index is reached during the
# build, so the same steps work in an air-gapped network (bring the wheelhouse along). By hand:
#
#   python3 -m pip wheel -w .rackfit/wheelhouse '.[operator]'
#   docker build -t rackfit:0.1.0 .
#   docker build -t rackfit:0.1.0 --build-arg BASE_IMAGE=my-registry/python:3.11-slim .
#
# BASE_IMAGE: any image with python3 3.11 (the wheelhouse's Python) and its venv module, and
# groupadd/useradd; tools/image/debian-base.sh makes one from Debian packages (debootstrap).

ARG BASE_IMAGE=python:3.11-slim

# --- build: a virtual environment with rackfit[operator], from the wheelhouse only ---------------
FROM ${BASE_IMAGE} AS build
ARG WHEELHOUSE=.rackfit/wheelhouse
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY ${WHEELHOUSE}/ /wheels/
RUN set -eu; \
    python3 -m venv /opt/rackfit; \
    /opt/rackfit/bin/pip install --no-index --find-links /wheels 'rackfit[operator]'; \
    /opt/rackfit/bin/pip uninstall -y -q pip setuptools; \
    # kubernetes>=35 carries an asyncio copy of its client (kubernetes/aio, 68 MB) that rackfit never
    # imports (kopf talks to the API with aiohttp; rackfit.operator.kube uses the sync client)
    rm -rf /opt/rackfit/lib/python3.11/site-packages/kubernetes/aio

# --- runtime: the environment only (no wheelhouse, pip, compilers or caches), as a non-root user ---
FROM ${BASE_IMAGE}
ENV PATH=/opt/rackfit/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN groupadd --system --gid 65532 rackfit \
 && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin rackfit
COPY --from=build /opt/rackfit /opt/rackfit
RUN rackfit catalog >/dev/null
USER 65532:65532
# 8080 kopf liveness (/healthz), 9090 Prometheus metrics, 9443 admission webhooks (TLS)
EXPOSE 8080 9090 9443
ENTRYPOINT ["rackfit"]
CMD ["operator"]
