"""The real app serving `POST /webhooks/github` in-process, signed with the tests' secret."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from asgi_lifespan import LifespanManager

from project_orchestrator.app import create_app
from tests.conftest import make_settings

SECRET = "webhook-secret-0123456789"
URL = "/webhooks/github"


@asynccontextmanager
async def webhook_client(
    tmp_path: Path, database_url: str, client_ip: str = "127.0.0.1", **overrides: Any
) -> AsyncIterator[httpx.AsyncClient]:
    values: dict[str, Any] = {"database_url": database_url, "github_webhook_secret": SECRET}
    values.update(overrides)
    app = create_app(make_settings(tmp_path, **values))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app, client=(client_ip, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield client
