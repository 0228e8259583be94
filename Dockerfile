# Vigil: one image, many roles. The `vigil` console script is the entrypoint,
# the role is the command:
#   docker run vigil worker          (default)
#   docker run vigil gateway
#   docker run vigil simulate --patients 16
#   docker run vigil db migrate
# Configuration is by environment only: VIGIL_KAFKA_URL, VIGIL_DATABASE_URL,
# VIGIL_GATEWAY_HOST, VIGIL_GATEWAY_PORT.

# --------------------------------------------------------------------------
# Stage 1: build. Has the compiler toolchain for any dependency that ships
# only an sdist; none of it reaches the final image.
# --------------------------------------------------------------------------
FROM python:3.11-slim-bookworm AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1

RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*

# Self-contained virtualenv, copied whole into the runtime stage.
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src

# Dependencies first, in their own layer, so a source-only change does not
# reinstall the whole pinned tree. Only [project].dependencies are installed:
# no test/dev extras.
COPY pyproject.toml constraints.txt ./
RUN python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' > /tmp/requirements.txt \
 && pip install -c constraints.txt -r /tmp/requirements.txt

# Then the project itself (a regular, non-editable install into the venv).
COPY . .
RUN pip install -c constraints.txt . \
 && vigil --help > /dev/null

# --------------------------------------------------------------------------
# Stage 2: runtime. Interpreter + venv only; no compilers, no source tree.
# --------------------------------------------------------------------------
FROM python:3.11-slim-bookworm AS runtime

LABEL org.opencontainers.image.title="vigil" \
      org.opencontainers.image.description="Real-time patient-monitoring stream processor" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONFAULTHANDLER=1 \
    VIGIL_GATEWAY_HOST=0.0.0.0 \
    VIGIL_GATEWAY_PORT=8765 \
    NUMBA_CACHE_DIR=/var/lib/vigil/numba-cache

# Fixed, non-root uid/gid (numeric USER below, so orchestrators can verify
# runAsNonRoot without resolving names).
RUN groupadd --system --gid 10001 vigil \
 && useradd --system --uid 10001 --gid vigil --home-dir /home/vigil \
            --create-home --shell /usr/sbin/nologin vigil \
 && install -d -o vigil -g vigil -m 0750 /var/lib/vigil

COPY --from=builder /opt/venv /opt/venv

# Writable working directory: the Faust worker keeps its local table state
# ("<app-id>-data") relative to the current directory.
WORKDIR /var/lib/vigil

USER 10001:10001

# Gateway (WebSocket + dashboard). The worker serves /metrics only where
# VIGIL_WORKER_METRICS_PORT is set (docker-compose.yml: 9464).
EXPOSE 8765

# No image-level HEALTHCHECK: the same image runs the worker, the one-shot
# migration and the simulator, which serve different ports or none. The gateway
# and the worker get their health checks in docker-compose.yml.

ENTRYPOINT ["vigil"]
CMD ["worker"]
