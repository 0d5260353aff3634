"""How deeply nested a JSON document we accept, everywhere one comes in.

Python's own JSON decoder, pydantic and the stdlib serializers recurse, and hit the
interpreter's recursion limit near 1,000 levels. A document that deep would be stored,
then fail in the worker, the API and the CLI on every read. Real GitHub and Telegram
payloads nest fewer than 15 levels, so a fixed limit far above that and far below the
recursion limit refuses only documents no sender produces.
"""

from __future__ import annotations

MAX_JSON_DEPTH = 64


def nesting_depth(value: object) -> int:
    """Levels of arrays and objects around the innermost value (a scalar is 0)."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
        else:
            continue
        deepest = max(deepest, depth + 1)
    return deepest


def too_deep(body: bytes, value: object, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the parsed `value` of `body` nests deeper than `limit`.

    Every level opens with a bracket, so a body with no more brackets than the limit (those
    inside strings included) cannot be too deep: most payloads are cleared by two scans in
    C, without walking the parsed value.
    """
    if body.count(b"{") + body.count(b"[") <= limit:
        return False
    return nesting_depth(value) > limit
