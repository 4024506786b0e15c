"""Cut texts end on a word boundary with an ellipsis (status decisions, report labels)."""

from __future__ import annotations

import pytest

from searchrun.clip import ELLIPSIS, clip

REASON = "deep: the query spans 6 content terms: quantum, computing, speed, machine, learning, limits"


def test_short_text_unchanged():
    assert clip(REASON, len(REASON)) == REASON
    assert clip("", 5) == "" and clip(None, 5) == ""


@pytest.mark.parametrize("limit", range(12, len(REASON)))
def test_cut_on_a_word_boundary_with_ellipsis(limit):
    out = clip(REASON, limit)
    assert len(out) <= limit and out.endswith(ELLIPSIS)
    kept = out[: -len(ELLIPSIS)]
    assert REASON.startswith(kept)
    # the next character of the original after the kept words is a separator, never a letter
    assert not REASON[len(kept)].isalnum(), (limit, out)
    assert not kept.endswith((" ", ",", ":", ";"))


def test_the_issue_example_is_not_cut_mid_word():
    assert clip("spans 6 content terms: quantum, computing, speed", 42) == "spans 6 content terms: quantum, computing…"


def test_one_long_word_is_cut_inside():
    assert clip("a" * 50, 20) == "a" * 19 + ELLIPSIS
    assert clip("see https://example.invalid/" + "x" * 80, 40).startswith("see https://")
