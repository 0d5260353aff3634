"""Our plain Markdown-ish texts as Telegram HTML: escaped, and split below 4096 characters.

Every text is escaped first, so nothing a person or SCAR wrote can become markup; only our
own few conventions (`**bold**`, `` `code` ``, `## headings`, checklists) turn into tags.
"""

from __future__ import annotations

import html
import re

TELEGRAM_LIMIT = 4096
# Splitting happens on the source text; escaping can lengthen it (& becomes &amp;), so
# chunks are cut well below the limit and checked again after conversion.
CHUNK_SOURCE_LIMIT = 3500

_BOLD = re.compile(r"\*\*(.+?)\*\*")
_CODE = re.compile(r"`([^`\n]+)`")
_HEADING = re.compile(r"^#{1,6}\s+(.*)$")
_CHECKED = re.compile(r"^- \[x\] ", re.IGNORECASE)
_UNCHECKED = re.compile(r"^- \[ \] ")
_HIDDEN = re.compile(r"<!--.*?-->", re.DOTALL)


def to_html(text: str) -> str:
    lines = []
    for raw in _HIDDEN.sub("", text).splitlines():
        line = html.escape(raw, quote=False)
        heading = _HEADING.match(line)
        if heading:
            line = f"<b>{heading.group(1)}</b>"
        line = _CHECKED.sub("✅ ", line)
        line = _UNCHECKED.sub("▫️ ", line)
        line = _BOLD.sub(r"<b>\1</b>", line)
        line = _CODE.sub(r"<code>\1</code>", line)
        lines.append(line)
    return "\n".join(lines).strip()


def _pieces(text: str, limit: int) -> list[str]:
    """Paragraphs first, then lines, then hard cuts: the fewest, most natural breaks."""
    if len(text) <= limit:
        return [text]
    for separator in ("\n\n", "\n", " "):
        parts = text.split(separator)
        if len(parts) == 1:
            continue
        chunks: list[str] = []
        current = ""
        for part in parts:
            candidate = f"{current}{separator}{part}" if current else part
            if len(candidate) <= limit:
                current = candidate
                continue
            if current:
                chunks.append(current)
            current = part
        if current:
            chunks.append(current)
        return [piece for chunk in chunks for piece in _pieces(chunk, limit)]
    return [text[i : i + limit] for i in range(0, len(text), limit)]


def split_html(text: str, limit: int = CHUNK_SOURCE_LIMIT) -> list[str]:
    """The text as one or more HTML messages, each within Telegram's limit."""
    messages = []
    for piece in _pieces(text.strip() or "…", limit):
        converted = to_html(piece) or "…"
        if len(converted) > TELEGRAM_LIMIT:
            messages.extend(split_html(piece, limit // 2))
        else:
            messages.append(converted)
    return messages
