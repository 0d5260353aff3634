"""GET /page/{token}: a project's read-only page, for whoever holds its signed link.

Anything that is not a good link (none, altered, expired, for a project since deleted) is
the same 404, so a guesser learns nothing; each refusal is audited, a bounded number a
minute (`AuthFailureTally`). The page never shows its token onward: no referrer leaves
it, and it is not cached or indexed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markdown_it import MarkdownIt
from markupsafe import Markup

from project_orchestrator.api.state import app_state
from project_orchestrator.audit import AuditAction
from project_orchestrator.ingress.client_ip import forwarded_for
from project_orchestrator.logging import get_logger
from project_orchestrator.projects.page_links import PAGE_PATH, LinkRefused
from project_orchestrator.workflow.page import read_page
from project_orchestrator.workflow.scar_addressing import web_url

log = get_logger(__name__)

router = APIRouter(tags=["page"])

_templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
)
# The vision is the model's writing: its markdown becomes HTML, but raw HTML in it stays
# text, and markdown-it refuses javascript: and similar links.
_markdown = MarkdownIt("commonmark", {"html": False})
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


_templates.globals["when"] = when


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
    # Safe as markup: markdown-it escapes the text and, with html off, any HTML in it.
    rendered = _markdown.render(page.vision.markdown) if page.vision else None
    vision_html = Markup(rendered) if rendered is not None else None  # noqa: S704
    body = _templates.get_template("page.html").render(page=page, vision_html=vision_html)
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
    if state.refusals is not None:
        # The path without the token: an audit line need not carry what was tried.
        state.refusals.refused(AuditAction.UNAUTHORIZED_ACCESS, reason, PAGE_PATH, ip)
    body = _templates.get_template("page_missing.html").render()
    return HTMLResponse(body, status_code=404, headers=_HEADERS)
