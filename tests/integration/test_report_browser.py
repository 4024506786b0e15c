"""The report of a real local run, rendered by a real browser (headless Chromium).

``searchrun run examples/searchrun.yaml`` writes the report; Chromium loads it and dumps the DOM
it built. The graph's SVG must hold one node per step of the run, and no step may be shown as
still running. Skipped when no browser is installed (hack/test.sh installs Debian's chromium),
failed instead when ``CI`` is set. ``SEARCHRUN_BROWSER`` names another Chromium-like binary.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# No network, no first-run work, no profile left behind: the page is a local file.
HEADLESS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser() -> str:
    named = os.environ.get("SEARCHRUN_BROWSER")
    found = named or next((p for p in map(shutil.which, BROWSERS) if p), None)
    if not found:
        reason = f"no headless browser installed (looked for {', '.join(BROWSERS)}; hack/test.sh installs chromium)"
        if os.environ.get("CI", "").strip().lower() not in {"", "0", "false", "no"}:
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return found


class _SvgNodes(HTMLParser):
    """The graph's nodes (``<g class="node ..." data-step=...>`` inside an ``<svg>``) as the browser serialised them."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.depth = 0
        self.nodes: list[dict] = []
        self.rects = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "svg":
            self.depth += 1
        elif self.depth and tag == "g" and "node" in (a.get("class") or "").split():
            self.nodes.append(a)
        elif self.depth and tag == "rect":
            self.rects += 1

    def handle_endtag(self, tag):
        if tag == "svg":
            self.depth -= 1


@pytest.fixture(scope="module")
def local_run(tmp_path_factory) -> Path:
    """The run directory of one real local run of the README's example."""
    store = tmp_path_factory.mktemp("browser-run")
    proc = subprocess.run([sys.executable, "-m", "searchrun", "run", str(REPO / "examples" / "searchrun.yaml"),
                           "--store", f"file://{store}", "--quiet"],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    reports = list(store.glob("runs/*/report.html"))
    assert len(reports) == 1, reports
    return reports[0].parent


def test_the_browser_draws_one_graph_node_per_step(browser, local_run):
    lineage = json.loads((local_run / "lineage.json").read_text())
    step_ids = [s["id"] for s in lineage["status"]["steps"]]
    assert len(step_ids) >= 5  # detect, plan, traversals, aggregate, report
    with tempfile.TemporaryDirectory(prefix="searchrun-chromium-") as profile:
        proc = subprocess.run([browser, *HEADLESS, f"--user-data-dir={profile}", "--dump-dom",
                               (local_run / "report.html").as_uri()],
                              capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = _SvgNodes()
    dom.feed(proc.stdout)
    drawn = [n.get("data-step") for n in dom.nodes]
    assert sorted(drawn) == sorted(step_ids), (drawn, step_ids)
    assert dom.rects >= len(step_ids)  # each node is a box the browser laid out
    report_node = next(n for n in dom.nodes if n.get("data-step") == "report")
    assert "n-failed" not in report_node["class"]
    assert ">Running<" not in proc.stdout, "a step is shown as still running in the finished report"
