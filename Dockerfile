# syntax=docker/dockerfile:1
# The civic search gateway: Strawberry GraphQL on Starlette under uvicorn.
#   docker build -t civic-search-gateway .          (or: docker-compose build gateway)
# Dependencies are pinned by constraints.txt; the project itself comes from pyproject.toml. The image ships the
# server and the operators' commands (the 'ops' extra: progress bars), not the OTLP/gRPC exporter (the 'grpc'
# extra, about 19 MB) nor the test tools: OTLP goes over HTTP.

# --- build: install the project and its pinned dependencies into a virtualenv ---------------------------
FROM python:3.11-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH="/opt/venv/bin:$PATH"

WORKDIR /src
# README.md* : pyproject.toml names README.md; the wildcard copies it when present without requiring it.
COPY pyproject.toml constraints.txt README.md* ./
COPY gateway/ gateway/
COPY schema/ schema/
COPY routing/ routing/
COPY migrations/ migrations/
COPY ops/ ops/
RUN pip install -c constraints.txt '.[ops]'

# --- web: GraphiQL's assets from the npm registry, at build time (the gateway serves them; no CDN) ---------
# Node 26: the current LTS line.
FROM node:26.10-bookworm-slim AS web
WORKDIR /web
COPY gateway/static/vendor/package.json gateway/static/vendor/package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error

# --- runtime: the virtualenv only, run by an unprivileged user --------------------------------------------
FROM python:3.11-slim-bookworm

ENV PATH="/opt/venv/bin:$PATH" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN groupadd --system --gid 10001 gateway \
 && useradd --system --uid 10001 --gid gateway --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin gateway

COPY --from=build /opt/venv /opt/venv
COPY --from=web /web/node_modules /opt/venv/lib/python3.11/site-packages/gateway/static/vendor/node_modules

WORKDIR /app
USER gateway:gateway
EXPOSE 8000 9464

# No curl in the slim image: probe /healthz with the standard library.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; r = urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2); sys.exit(0 if r.status == 200 else 1)"]

CMD ["python", "-m", "gateway", "serve", "--host", "0.0.0.0", "--port", "8000"]
