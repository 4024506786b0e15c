"""Free text cut to a length (status decisions, report labels): at a word boundary, with "…",
so that a cut text never ends mid-word and always shows that it was cut."""

from __future__ import annotations

import re

ELLIPSIS = "…"
_SPACE = re.compile(r"\s")


def clip(text: object, limit: int) -> str:
    """``text`` when it fits in ``limit`` characters, else its longest prefix that ends on a word
    boundary (a single word longer than half the limit is cut inside), plus an ellipsis; the
    result is never longer than ``limit``."""
    s = "" if text is None else str(text)
    if len(s) <= limit:
        return s
    if limit <= 1:
        return ELLIPSIS[:max(limit, 0)]
    head = s[: limit - 1]
    if head[-1].isalnum() and s[limit - 1].isalnum():  # inside a word: back up to the last space
        spaces = [m.start() for m in _SPACE.finditer(head)]
        if spaces and spaces[-1] >= (limit - 1) // 2:
            head = head[: spaces[-1]]
    head = head.rstrip().rstrip(",;:")
    return (head or s[: limit - 1]) + ELLIPSIS
