# syntax=docker/dockerfile:1.7
# unmo's container image (docs/deploy.md): the ingest server by default, and every other
# `unmo` command (tracker, migrate, apps ...) by giving it as the container's command.
#
#   docker build -t unmo .
#   docker run -e UNMO_DATABASE_URL=postgresql://... -p 8080:8080 unmo
#
# Configuration comes only from the environment (UNMO_DATABASE_URL, UNMO_HOST, UNMO_PORT,
# UNMO_WORKERS, UNMO_POOL_SIZE, UNMO_MAX_QUEUE; docs/deploy.md lists them).  The builder
# stage compiles the Cython extension; the runtime stage gets the finished virtualenv and
# no compiler.  tests/deploy/test_dockerfile.py lints this file and runs the builder's
# steps on the test machine, so keep RUN steps free of absolute paths other than
# $VIRTUAL_ENV and keep apt-get to the builder.

# Same Python minor version and Debian release as the machines the test suite runs on;
# pin a digest (python:3.11-slim-bookworm@sha256:...) in production builds.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
# A C compiler for the extension; versions float with the Debian release the base pins.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
ENV VIRTUAL_ENV=/opt/unmo \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_WARN_SCRIPT_LOCATION=1
RUN python -m venv "$VIRTUAL_ENV"
ENV PATH="$VIRTUAL_ENV/bin:$PATH"
WORKDIR /build
COPY pyproject.toml setup.py README.md LICENSE ./
COPY src ./src
# pip builds the extension in an isolated environment with the build requirements
# pyproject.toml pins (Cython, numpy, setuptools) and installs the pinned dependencies.
# The cache mount keeps downloads out of the image and between builds.
RUN --mount=type=cache,target=/root/.cache/pip pip install .
# Fail the build, not the first request, when the compiled module does not load:
# -P keeps /build off sys.path, so this imports the installed package.
RUN python -P -c "import unmo._native" && unmo --help > /dev/null


FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="unmo" \
      org.opencontainers.image.description="Self-hosted mobile attribution and event ingestion" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV VIRTUAL_ENV=/opt/unmo \
    PATH="/opt/unmo/bin:$PATH" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    UNMO_HOME=/var/lib/unmo \
    UNMO_HOST=0.0.0.0 \
    UNMO_PORT=8080
# A fixed numeric id so that Kubernetes' runAsNonRoot can verify it without /etc/passwd.
RUN groupadd --system --gid 10001 unmo \
    && useradd --system --uid 10001 --gid unmo --home-dir /var/lib/unmo --create-home --shell /usr/sbin/nologin unmo
COPY --from=builder /opt/unmo /opt/unmo
USER 10001:10001
WORKDIR /var/lib/unmo
EXPOSE 8080
# /healthz answers while the process is alive (readiness is /readyz: database reachable,
# not shedding).  The image has no curl: Python's urllib does the probe, and a refused
# connection or a non-2xx answer raises, which exits non-zero.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('UNMO_PORT', '8080') + '/healthz', timeout=2)"]
# SIGTERM drains: stop accepting, commit what was accepted, exit 0 within 30 s.
STOPSIGNAL SIGTERM
ENTRYPOINT ["unmo"]
CMD ["serve"]
