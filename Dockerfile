# One image for the three processes (auth, canvas, gateway) and the migration job and relay;
# docker-compose.yml picks the command. Multi-stage: build deps in a builder, run as non-root.
FROM python:3.11-slim AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
# The pinned runtime dependencies first, from pyproject.toml alone (no [dev] extra): this layer is
# rebuilt only when the dependencies change, not on every change of the code.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > requirements.txt \
    && /opt/venv/bin/pip install -r requirements.txt
COPY README.md ./
COPY shared ./shared
COPY services ./services
COPY gateway ./gateway
COPY devtools ./devtools
RUN /opt/venv/bin/pip install --no-deps .

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
# uvicorn's --log-config: its own lines as JSON too (shared.logging.uvicorn_formatter).
COPY --chown=app:app deploy/uvicorn-logging.json ./deploy/
USER app
EXPOSE 8000 8001 8002
CMD ["uvicorn", "gateway.app:app", "--host", "0.0.0.0", "--port", "8000", "--loop", "uvloop", "--http", "shared.server:LimitedHttpToolsProtocol", "--limit-concurrency", "1000", "--no-proxy-headers", \
     "--log-config", "deploy/uvicorn-logging.json"]
