# One image for the three processes (auth, canvas, gateway) and the migration job and relay;
# docker-compose.yml picks the command. Multi-stage: build deps in a builder, run as non-root.
# Few steps on purpose: each step is a layer, and a storage driver without copy-on-write (vfs)
# copies the whole file system for every one of them.

# The pinned runtime dependencies (no [dev] extra), so that their layer below is rebuilt only when
# they change: not on every change of the code, nor of pyproject.toml's other tables.
FROM python:3.11-slim AS requirements
COPY pyproject.toml /
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('/pyproject.toml', 'rb'))['project']['dependencies']))" \
    > /requirements.txt

FROM python:3.11-slim AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=requirements /requirements.txt /tmp/requirements.txt
RUN python -m venv /opt/venv && /opt/venv/bin/pip install -r /tmp/requirements.txt
# The project (what .dockerignore lets through), installed without dependencies; the migrations are
# read from the source tree by Piccolo, so the code is also kept as files for the runtime's /app.
# deploy/uvicorn-logging.json is uvicorn's --log-config (its own lines as JSON too).
COPY . /src
RUN /opt/venv/bin/pip install --no-deps /src \
    && mkdir /app && cp -r /src/shared /src/services /src/gateway /src/devtools /src/deploy /app/

FROM python:3.11-slim AS runtime
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 APP_ENV=production
# /tmp/metrics: the mount point of docker-compose.yml's tmpfs for prometheus_client's multiprocess
# files. It must exist in the image, world-writable with the sticky bit: on every start after the
# first (`docker kill` + `start`, `restart`, `up` of a stopped container) runc gives the fresh tmpfs
# the mode of the directory beneath it, and a directory runc had to create itself is root's 0755,
# which the app user cannot write (the workers then die with PermissionError). A tmpfs `mode=` option
# is overridden the same way, so it cannot do this.
RUN groupadd --system app && useradd --system --gid app --home /app app && install -d -m 1777 /tmp/metrics
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder --chown=app:app /app /app
WORKDIR /app
USER app
EXPOSE 8000 8001 8002
CMD ["python", "-m", "shared.serve", "gateway.app:app", "--host", "0.0.0.0", "--port", "8000", "--loop", "uvloop", "--http", "shared.server:LimitedHttpToolsProtocol", "--limit-concurrency", "1000", "--no-proxy-headers", \
     "--log-config", "deploy/uvicorn-logging.json"]
