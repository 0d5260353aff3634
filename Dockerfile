# Project Orchestrator image: `docker build -t project-orchestrator .`
# The same image runs the API (`orchestrator serve`), workers (`orchestrator worker`) and
# one-shot commands (`orchestrator migrate`, `orchestrator doctor`, `alembic ...`).

# --- builder: resolve the locked dependencies into /app/.venv --------------------------
FROM python:3.11-slim AS builder

# Pinned to the uv that wrote uv.lock, so `--locked` reads it the same way.
ARG UV_VERSION=0.13.9
RUN pip install --no-cache-dir --disable-pip-version-check "uv==${UV_VERSION}"

ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv

WORKDIR /app

# Dependencies first: this layer is reused until pyproject.toml or uv.lock change.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-install-project

# Then the project itself (installed editable: alembic.ini is found next to src/).
COPY README.md ./
COPY src/ src/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev

# --- runtime: the virtualenv, the code and the migrations, run by an unprivileged user --
FROM python:3.11-slim AS runtime

RUN groupadd --system --gid 10001 orchestrator \
    && useradd --system --uid 10001 --gid 10001 --create-home \
        --home-dir /home/orchestrator --shell /usr/sbin/nologin orchestrator

WORKDIR /app

# Same path as in the builder: the venv's scripts carry absolute shebangs.
COPY --from=builder /app/.venv /app/.venv
COPY src/ src/
COPY alembic/ alembic/
COPY alembic.ini ./

# Code stays root-owned (read-only for the service); only logs/ and data/ are writable.
RUN python -m compileall -q src alembic \
    && mkdir -p logs data \
    && chown orchestrator:orchestrator logs data

ENV PATH="/app/.venv/bin:${PATH}" \
    VIRTUAL_ENV=/app/.venv \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    APP_ENV=production \
    HOST=0.0.0.0 \
    PORT=8000

USER 10001:10001

EXPOSE 8000

# Ready means: database reachable and migrations applied (the AI does not gate readiness).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health/ready' % os.environ.get('PORT', '8000'), timeout=4)"]

CMD ["orchestrator", "serve"]
