# One image for the three processes (auth, canvas, gateway) and the migration job and relay;
# docker-compose.yml picks the command. Multi-stage: build deps in a builder, run as non-root.
FROM python:3.11-slim AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
COPY gateway ./gateway
COPY devtools ./devtools
# Runtime dependencies only (no [dev] extra).
RUN /opt/venv/bin/pip install .

FROM python:3.11-slim AS runtime
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 APP_ENV=production
RUN groupadd --system app && useradd --system --gid app --home /app app
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
# The migrations are read from the source tree by Piccolo, so the code is copied as files too.
COPY --chown=app:app shared ./shared
COPY --chown=app:app services ./services
COPY --chown=app:app gateway ./gateway
COPY --chown=app:app devtools ./devtools
USER app
EXPOSE 8000 8001 8002
CMD ["uvicorn", "gateway.app:app", "--host", "0.0.0.0", "--port", "8000", "--loop", "uvloop", "--http", "shared.server:LimitedHttpToolsProtocol", "--limit-concurrency", "1000", "--no-proxy-headers"]
