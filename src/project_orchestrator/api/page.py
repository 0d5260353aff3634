"""GET /page/{token}: a project's read-only page, for whoever holds its signed link.

Anything that is not a good link (none, altered, expired, for a project since deleted) is
the same 404, so a guesser learns nothing; each refusal is audited, a bounded number a
minute (`AuthFailureTally`). The page never shows its token onward: no referrer leaves
it, and it is not cached or indexed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from project_orchestrator.api.state import app_state
from project_orchestrator.audit import AuditAction
from project_orchestrator.ingress.client_ip import forwarded_for
from project_orchestrator.logging import get_logger
from project_orchestrator.projects.page_links import PAGE_PATH, LinkRefused
from project_orchestrator.workflow.page import read_page
from project_orchestrator.workflow.scar_addressing import web_url

if TYPE_CHECKING:
    from jinja2 import Environment
    from markdown_it import MarkdownIt

log = get_logger(__name__)

router = APIRouter(tags=["page"])

_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
}


def when(moment: datetime) -> str:
    """'4 Dec 2026, 14:05 UTC': one zone for everyone, said so."""
    return moment.astimezone(UTC).strftime("%-d %b %Y, %H:%M UTC")


@cache
def _templates() -> Environment:
    # Built at the first page asked for, not at start-up: an API process that never
    # serves one does not carry Jinja2 in its memory.
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    templates = Environment(
        loader=FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=select_autoescape(["html"]),
    )
    templates.globals["when"] = when
    return templates


@cache
def _markdown() -> MarkdownIt:
    # The vision is the model's writing: its markdown becomes HTML, but raw HTML in it
    # stays text, and markdown-it refuses javascript: and similar links.
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": False})


def _vision_html(markdown: str) -> Any:
    from markupsafe import Markup

    # Safe as markup: markdown-it has escaped the text and any HTML in it.
    return Markup(_markdown().render(markdown))  # noqa: S704


# A page for people, not part of the JSON API: out of the schema, as /docs is.
@router.get(f"{PAGE_PATH}/{{token}}", response_class=HTMLResponse, include_in_schema=False)
async def project_page(request: Request, token: str) -> HTMLResponse:
    state = app_state(request)
    links = state.page_links
    if links is None:
        return _refused(request, "project pages are not set up")
    try:
        project_id = links.open(token)
    except LinkRefused as refused:
        return _refused(request, f"project page link {refused.reason}")
    async with state.db.session_scope() as session:
        page = await read_page(
            session,
            project_id,
            github_web_url=web_url(state.settings.github_api_url),
            now=datetime.now(UTC),
        )
    if page is None:
        return _refused(request, "project page link for a deleted project")
    vision_html = _vision_html(page.vision.markdown) if page.vision else None
    body = _templates().get_template("page.html").render(page=page, vision_html=vision_html)
    log.info("page.viewed", project_id=str(project_id))
    return HTMLResponse(body, headers=_HEADERS)


@router.get(PAGE_PATH, response_class=HTMLResponse, include_in_schema=False)
async def no_page(request: Request) -> HTMLResponse:
    return _refused(request, "project page link missing")


def _refused(request: Request, reason: str) -> HTMLResponse:
    state = app_state(request)
    peer = request.client.host if request.client else None
    ip = state.clients.client_ip(peer, forwarded_for(request))
    log.info("page.refused", reason=reason)
    # The path without the token: an audit line need not carry what was tried.
    state.refusals.refused(AuditAction.UNAUTHORIZED_ACCESS, reason, PAGE_PATH, ip)
    body = _templates().get_template("page_missing.html").render()
    return HTMLResponse(body, status_code=404, headers=_HEADERS)
