"""hack/lib/progress.sh and support.console: long phases say when they start, tick, and end,
and their lines reach the console of a pytest session that captures the script's output."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LIB = REPO / "hack" / "lib" / "progress.sh"


def bash(script: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = f"set -euo pipefail\nsource {LIB}\n{script}"
    e = {k: v for k, v in os.environ.items() if k != "SEARCHRUN_CONSOLE"}
    return subprocess.run(["bash", "-c", full], capture_output=True, text=True, timeout=60, env={**e, **env})


def test_start_tick_and_end_lines_with_duration():
    p = bash('progress_start "build x"; sleep 3.5; progress_end "build x"; echo out', SEARCHRUN_PROGRESS_TICK="1")
    assert p.returncode == 0, p.stderr
    lines = p.stderr.splitlines()
    assert lines[0].startswith("==> ") and lines[0].endswith("build x: started")
    assert any("build x: still running" in ln for ln in lines[1:-1]), lines
    assert lines[-1].endswith(("build x: done in 3 s", "build x: done in 4 s")), lines
    assert p.stdout == "out\n"  # nothing of the ticker on stdout (scripts print results there)


def test_a_phase_cut_short_by_an_error_says_so_and_the_ticker_stops():
    p = bash('progress_start "build y"; sleep 1.5; false; progress_end "build y"')
    assert p.returncode == 1
    assert "build y: ended without finishing after" in p.stderr
    assert "done in" not in p.stderr


def test_minutes_in_durations():
    p = bash("progress_duration 59; progress_duration 185")
    assert p.stdout.splitlines() == ["59 s", "3 min 05 s"]


def test_lines_reach_the_console_past_pytest_capture(tmp_path):
    """A script run with its output captured, inside a captured test: its "==>" lines still show."""
    (tmp_path / "conftest.py").write_text("from support import console\n\n\ndef pytest_configure(config):\n"
                                          "    console.attach(config)\n")
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(f"""
        import subprocess

        def test_quiet_script():
            p = subprocess.run(["bash", "-c", 'source {LIB}; progress_start "inner phase"; progress_end "inner phase"'],
                               capture_output=True, text=True)
            assert p.returncode == 0
            from support.console import say
            say("inner milestone")
    """))
    env = {**os.environ, "PYTHONPATH": str(REPO / "tests")}
    env.pop("SEARCHRUN_CONSOLE", None)
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                       capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    console = p.stdout + p.stderr
    assert "inner phase: started" in console and "inner phase: done in" in console, console
    assert "inner milestone" in console, console
