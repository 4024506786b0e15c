"""Milestones on the test session's console, past pytest's output capture.

pytest captures what tests and fixtures write (fd 1 and 2), and the cluster fixture sends the
scripts' stderr to log files, so a cold session would show nothing for its first many minutes.
``attach(config)`` (from ``pytest_configure``) keeps a duplicate of the session's own stderr and
opens a pipe whose path it exports as ``SEARCHRUN_CONSOLE``: hack/lib/progress.sh writes its
"==> " lines there too, and a reader thread puts them on the console with ``say``.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from contextlib import nullcontext

_lock = threading.Lock()
_state: dict = {"fd": None, "config": None, "width": 0}


def attach(config) -> None:
    """Remember the session's real stderr and start relaying the scripts' progress lines."""
    if _state["fd"] is not None:
        return
    capman = config.pluginmanager.get_plugin("capturemanager")
    with capman.global_and_fixture_disabled() if capman is not None else nullcontext():
        _state["fd"] = os.dup(2)
    _state["config"] = config
    if sys.platform.startswith("linux"):
        r, w = os.pipe()
        os.environ["SEARCHRUN_CONSOLE"] = f"/proc/{os.getpid()}/fd/{w}"
        threading.Thread(target=_relay, args=(r,), name="searchrun-console", daemon=True).start()


def _relay(fd: int) -> None:
    with os.fdopen(fd, "r", errors="replace") as pipe:
        for line in pipe:
            if line.strip():
                say(line.rstrip("\n"))


def say(message: str) -> None:
    """One line on the console (``==> HH:MM:SS message``), on a line of its own."""
    line = message if message.startswith("==> ") else f"==> {time.strftime('%H:%M:%S', time.gmtime())} {message}"
    with _lock:
        fd = _state["fd"]
        if fd is None:  # not under pytest (or before configure): plain stderr
            print(line, file=sys.__stderr__, flush=True)
            return
        prefix = ""
        tr = _state["config"].pluginmanager.get_plugin("terminalreporter") if _state["config"] else None
        tw = getattr(tr, "_tw", None)
        if tw is not None:
            tw.flush()
            width = tw.width_of_current_line
            # the progress dots' line is not finished: start ours on the next one (once)
            if width and width != _state["width"]:
                prefix = "\n"
            _state["width"] = width
        try:
            os.write(fd, f"{prefix}{line}\n".encode())
        except OSError:
            pass
