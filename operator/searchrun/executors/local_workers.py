"""Warm local steps: a fork server that has imported the step code and loaded the corpus once.

A fresh interpreter per step costs about 0.3 s (start, imports, corpus load, index build). The
worker (one process per run: forked from the executor, which has done the imports, or else
``searchrun step-worker``) pays that once; for each step it forks a
child that runs the same entrypoint logic as ``searchrun step`` (``steps.entrypoint.execute``) and
exits with its exit code. Each step is still its own process: a crash, a kill at the timeout or a
memory blow-up (an address-space limit of ``spec.steps.resources.limits.memory`` beyond the
worker's) ends that child only. The corpus and its index are shared copy-on-write; the store (and
any S3 client, ``artifacts.s3._forget_shared_client``) is opened by each child itself.

The executor (``local_pool``) talks to the worker over two pipes, one JSON object a line:
``{"op": "start", "key", "ctx", "stderr", "memory"}`` and ``{"op": "kill", "key"}`` in;
``{"ev": "ready", "pid", "corpusLoads", "docs", "seconds"}`` and ``{"ev": "exited", "key", "code"}``
out (``code`` as ``Popen.returncode``: negative for a signal). A child's stdout goes to /dev/null
and its stderr to a file, as a cold step's does to a pipe.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional

WORKER_COMMAND = [sys.executable, "-m", "searchrun", "step-worker"]
# ----------------------------------------------------------------- the worker (its own process)


class _Worker:
    def __init__(self, corpus_uri: str, corpus_format: str, query: str = ""):
        from ..agents import registry  # noqa: F401  (the agent kinds, imported once, before the forks)
        from ..agents.bm25 import index_for
        from ..artifacts import read_uri
        from ..corpus import load_corpus
        from ..steps import entrypoint
        from ..steps.io import StepIO
        from ..steps.logcopy import run_with_log_copy

        self.execute = entrypoint.execute
        self.with_log_copy = run_with_log_copy
        t0 = time.monotonic()
        self.corpus, self.loads, self.key = None, 0, (corpus_uri, corpus_format)
        try:
            self.corpus = load_corpus(corpus_uri, corpus_format, base_dir=Path.cwd(), read_uri=read_uri)
            self.loads = 1
            _warm(index_for(self.corpus), query)  # the offline agent's BM25 index, built once and shared too
        except Exception as e:  # each step then loads it itself, and fails as a cold step does
            print(f"searchrun step-worker: corpus {corpus_uri} not preloaded: {e}", file=sys.stderr, flush=True)
        self.seconds = time.monotonic() - t0
        worker = self

        class WarmStepIO(StepIO):
            @property
            def corpus(self):
                """The worker's corpus when the step names it, else the step's own load."""
                c = self.ctx.corpus
                if worker.corpus is not None and (c.uri, getattr(c.format, "value", c.format)) == worker.key:
                    return worker.corpus
                return super().corpus

        self.make_io = WarmStepIO
        self.children: dict[int, tuple[str, int]] = {}  # exit pipe's read end → (key, pid)
        self.by_key: dict[str, int] = {}  # key → pid, while not reaped
        self.pid = os.getpid()
        self.prctl = _prctl()
        import resource  # noqa: F401,I001 - for _limit_memory, imported once here rather than in each child

    def _fork(self, cmd: dict, proto: tuple[int, int], sel: selectors.BaseSelector) -> None:
        r, w = os.pipe()  # the child holds w; its end (exit, crash or kill) makes r readable
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            self._child(cmd, [*proto, *self.children])  # never returns
        os.close(w)
        self.children[r] = (cmd["key"], pid)
        self.by_key[cmd["key"]] = pid
        sel.register(r, selectors.EVENT_READ)

    def _child(self, cmd: dict, inherited: list[int]) -> None:
        code = 1
        try:
            for fd in inherited:
                os.close(fd)
            fd = os.open(cmd["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(fd, 2)
            os.close(fd)
            signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a cold step
            _die_with_parent(self.pid, self.prctl)
            _limit_memory(int(cmd.get("memory") or 0))
            os.environ["SEARCHRUN_STEP"] = cmd["ctx"]  # what a cold step sees
            # as ``searchrun step`` does: its output copied to the store as log.txt, its input as input.json
            code = self.with_log_copy(lambda _argv: self.execute(cmd["ctx"], None, self.make_io), [])
        except BaseException as e:  # noqa: BLE001 - the child must never return into the worker's loop
            try:
                print(f"step failed: {type(e).__name__}: {e}"[:1000], file=sys.stderr)
            except BaseException:  # noqa: BLE001
                pass
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)

    def _reap(self, r: int, sel: selectors.BaseSelector, out: int) -> None:
        sel.unregister(r)
        os.close(r)
        key, pid = self.children.pop(r)
        self.by_key.pop(key, None)
        _, status = os.waitpid(pid, 0)
        _send(out, {"ev": "exited", "key": key, "code": _returncode(status)})

    def serve(self, proto_in: int, proto_out: int) -> int:
        _send(proto_out, {"ev": "ready", "pid": os.getpid(), "corpusLoads": self.loads,
                          "docs": len(self.corpus) if self.corpus is not None else 0, "seconds": round(self.seconds, 4)})
        import gc

        gc.freeze()  # the preloaded objects stay out of the children's collections (fewer copied pages)
        sel = selectors.DefaultSelector()
        sel.register(proto_in, selectors.EVENT_READ)
        buf = b""
        while True:
            for key, _ in sel.select():
                fd = key.fd
                if fd != proto_in:
                    self._reap(fd, sel, proto_out)
                    continue
                data = os.read(proto_in, 65536)
                if not data:  # the executor is gone or done: so are its steps
                    for pid in self.by_key.values():
                        _kill(pid)
                    for r in list(self.children):
                        try:
                            self._reap(r, sel, proto_out)
                        except OSError:  # nobody reads any more
                            pass
                    return 0
                buf += data
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    cmd = json.loads(line)
                    if cmd["op"] == "start":
                        self._fork(cmd, (proto_in, proto_out), sel)
                    elif cmd["op"] == "kill" and cmd["key"] in self.by_key:
                        _kill(self.by_key[cmd["key"]])  # not yet reaped, so the pid is still this child's


def _warm(index, query: str) -> None:
    """What the offline agent computes lazily and caches in the process that asks, computed here once
    so that each child inherits it instead of computing it again: the stem of each word of the corpus
    (``text.term``, ~1 ms per document read) and the postings of the query's terms and related words (a scan of the
    corpus each, ~0.1-0.4 s at 5,000 documents), which every traversal step looks up; and the corpus's
    document kinds (people, places: one pass over its links)."""
    try:
        from ..agents.corpus_kinds import kinds_for
        from ..agents.scoring import analyse
        from ..agents.text import WORD_RE, term

        kinds_for(index.corpus)

        for w in set(WORD_RE.findall(index.text.lower())):
            term(w)
        if not query:
            return
        for t in analyse(query).terms:  # and their related words, which the traversals weigh too
            for stem in (t.stem, *t.ordered):
                index.postings(stem)
    except Exception as e:  # only a warm-up: the steps compute what they need themselves
        print(f"searchrun step-worker: index not warmed: {e}", file=sys.stderr, flush=True)


def _send(fd: int, obj: dict) -> None:
    data = (json.dumps(obj, separators=(",", ":")) + "\n").encode()
    while data:
        data = data[os.write(fd, data):]


def _returncode(status: int) -> int:
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _prctl():
    """libc's prctl, looked up once in the worker (importing ctypes costs each child ~3 ms)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    return ctypes.CDLL(None, use_errno=True).prctl


def _die_with_parent(parent: int, prctl) -> None:
    """A step never outlives its worker (Linux: PR_SET_PDEATHSIG)."""
    if prctl is not None:
        prctl(1, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the worker died before the line above
        os._exit(1)


def _limit_memory(limit: int) -> None:
    """The step may grow its address space by ``limit`` bytes beyond what it shares with the worker;
    past that an allocation fails (MemoryError: the step fails and is retried, the worker lives on)."""
    if limit <= 0:
        return
    import resource

    with open("/proc/self/statm") as f:
        size = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    want = size + limit
    if hard != resource.RLIM_INFINITY:
        want = min(want, hard)
    resource.setrlimit(resource.RLIMIT_AS, (want, hard))


def main(argv: list[str]) -> int:
    """``searchrun step-worker CORPUS_URI [FORMAT [QUERY]]``: run by the local executor, not by hand."""
    if not argv or len(argv) > 3:
        print("usage: searchrun step-worker CORPUS_URI [FORMAT [QUERY]] (run by the local executor)", file=sys.stderr)
        return 2
    # The protocol keeps its own descriptors; 0 and 1 (which children inherit) point at /dev/null.
    proto_in, proto_out = os.dup(0), os.dup(1)
    _detach()
    return _Worker(*argv).serve(proto_in, proto_out)


def _detach(log: Optional[int] = None) -> None:
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    if log is not None:
        os.dup2(log, 2)
    os.close(null)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the executor's to handle; EOF ends us


def _close_all_but(*keep: int) -> None:
    low = 3
    for fd in sorted(keep):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, os.sysconf("SC_OPEN_MAX"))


class ForkedWorker:
    """A worker forked from the executor itself, as ``subprocess.Popen`` would show it: it skips a fresh
    interpreter and the imports (~0.4 s), which the executor has done already. Only safe while the
    executor has no other thread and no S3 client (``can_fork_worker``)."""

    def __init__(self, args: list[str], log_path: Path):
        to_worker, from_worker = os.pipe(), os.pipe()
        log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                _detach(log)
                _close_all_but(to_worker[0], from_worker[1])  # as Popen's close_fds: no socket handed down
                code = _Worker(*args).serve(to_worker[0], from_worker[1])
            except BaseException:  # noqa: BLE001 - never return into the executor's code
                import traceback

                traceback.print_exc()
            finally:
                os._exit(code)
        os.close(log)
        os.close(to_worker[0])
        os.close(from_worker[1])
        self.pid = pid
        self.stdin = os.fdopen(to_worker[1], "wb", buffering=0)
        self.stdout = os.fdopen(from_worker[0], "rb")
        self.returncode: Optional[int] = None
        self._lock = threading.Lock()

    def poll(self) -> Optional[int]:
        with self._lock:
            if self.returncode is None:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
                if pid:
                    self.returncode = _returncode(status)
            return self.returncode

    def wait(self, timeout: Optional[float] = None) -> int:
        end = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if end is not None and time.monotonic() > end:
                raise subprocess.TimeoutExpired("step-worker", timeout)
            time.sleep(0.005)
        return self.returncode

    def kill(self) -> None:
        if self.poll() is None:
            _kill(self.pid)
