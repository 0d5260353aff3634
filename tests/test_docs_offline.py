"""/docs works with no internet: Swagger UI 5 comes from the app itself, never a CDN.

The module's app has an API key set, so the checks also show the docs and their assets
open while /api/v1 is not, as FastAPI's own /docs was.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager

from project_orchestrator.app import create_app
from project_orchestrator.config import Settings
from tests.conftest import make_settings

KEY = "api-key-for-the-docs-0123456789"
# What each asset the page loads must be: (content types allowed, smallest plausible size).
EXPECTED = {
    ".js": (("text/javascript", "application/javascript"), 1_000_000),
    ".css": (("text/css",), 100_000),
    ".png": (("image/png",), 100),
}
_REFERENCE = re.compile(r"<(?:script|link)\b[^>]*?\b(?:src|href)=\"([^\"]*)\"", re.IGNORECASE)


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path, database_url=database_url, api_key=KEY)


def _references(html: str) -> list[str]:
    return _REFERENCE.findall(html)


async def _docs_assets(client: httpx.AsyncClient, prefix: str = "") -> list[str]:
    response = await client.get(f"{prefix}/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    return _references(response.text)


async def test_the_page_loads_nothing_from_another_origin(client: httpx.AsyncClient) -> None:
    html = (await client.get("/docs")).text
    assert "cdn.jsdelivr" not in html
    assert re.search(r"https?://", html) is None, "an absolute URL on the page"
    references = _references(html)
    assert sorted(Path(r).suffix for r in references) == [".css", ".js", ".png"]
    for reference in references:
        # Same origin: a path from the root, not a scheme-relative `//host/...`.
        assert reference.startswith("/docs/assets/"), reference
    assert "url: '/openapi.json'" in html


async def test_every_asset_is_served_with_its_type(client: httpx.AsyncClient) -> None:
    for reference in await _docs_assets(client):
        response = await client.get(reference)
        assert response.status_code == 200, reference
        types, smallest = EXPECTED[Path(reference).suffix]
        assert response.headers["content-type"].split(";")[0] in types, reference
        assert len(response.content) >= smallest, reference
        assert b"sourceMappingURL=" not in response.content, reference


async def test_the_script_is_swagger_ui_5(client: httpx.AsyncClient) -> None:
    [script] = [r for r in await _docs_assets(client) if r.endswith(".js")]
    body = (await client.get(script)).text
    version = re.search(r'PACKAGE_VERSION:"(\d+)\.(\d+)\.(\d+)"', body)
    assert version is not None
    assert version.group(1) == "5"  # 4.x cannot render the app's OpenAPI 3.1


async def test_no_redoc_and_unknown_assets_are_404(client: httpx.AsyncClient) -> None:
    assert (await client.get("/redoc")).status_code == 404
    missing = await client.get("/docs/assets/no-such-file.js")
    assert missing.status_code == 404
    assert (await client.get("/docs/assets/")).status_code == 404


async def test_the_oauth2_redirect_page_is_still_there(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs/oauth2-redirect")
    assert response.status_code == 200
    assert "swaggerUIRedirectOauth2" in response.text


async def test_the_docs_are_open_where_the_api_wants_its_key(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/v1/projects")).status_code == 401
    for reference in await _docs_assets(client):
        assert (await client.get(reference)).status_code == 200, reference


async def test_assets_are_counted_under_the_mount_not_the_file(client: httpx.AsyncClient) -> None:
    for reference in await _docs_assets(client):
        await client.get(reference)
    await client.get("/docs/assets/scanner-probe-1234.php")
    text = (await client.get("/metrics")).text
    assert 'route="/docs/assets",status="200"' in text
    assert 'route="/docs/assets",status="404"' in text
    assert 'route="/docs",status="200"' in text
    assert "swagger-ui-bundle" not in text
    assert "scanner-probe" not in text


async def test_behind_a_proxy_prefix_the_page_points_under_it(settings: Settings) -> None:
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app, root_path="/orch")
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            references = await _docs_assets(c, "/orch")
            assert references
            for reference in references:
                assert reference.startswith("/orch/docs/assets/"), reference
                assert (await c.get(reference)).status_code == 200, reference
            assert "url: '/orch/openapi.json'" in (await c.get("/orch/docs")).text
