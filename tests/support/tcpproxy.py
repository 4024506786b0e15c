"""A TCP proxy a test can cut: ``down()`` refuses new connections and resets open ones,
``up()`` listens again on the same port. Used to take a server "down" for the clients that
reach it through the proxy (step pods, the operator) while the server keeps its state.
"""

from __future__ import annotations

import socket
import threading
import time

from .s3server import free_port


class TcpProxy:
    def __init__(self, listen_host: str, upstream: tuple[str, int], port: int | None = None):
        self.host = listen_host
        self.port = port or free_port(listen_host)
        self.upstream = upstream
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._accepting = threading.Event()
        self._thread: threading.Thread | None = None
        self.connections = 0
        self.down_since: float | None = None

    @property
    def is_up(self) -> bool:
        return self._listener is not None

    def up(self) -> None:
        if self._listener is not None:
            return
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        deadline = time.monotonic() + 30
        while True:
            try:
                s.bind((self.host, self.port))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        s.listen(128)
        s.settimeout(0.2)
        self._listener = s
        self.down_since = None
        self._accepting.set()
        self._thread = threading.Thread(target=self._accept_loop, args=(s,), daemon=True, name=f"tcpproxy-{self.port}")
        self._thread.start()

    def down(self) -> None:
        """Close the listening socket (connects are refused) and reset every open connection."""
        s, self._listener = self._listener, None
        self._accepting.clear()
        if s is not None:
            if self._thread is not None:
                self._thread.join(5)
            s.close()
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for c in conns:
            try:
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
            except OSError:
                pass
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()
        self.down_since = time.monotonic()

    stop = down

    def _accept_loop(self, listener: socket.socket) -> None:
        while self._accepting.is_set() and self._listener is listener:
            try:
                client, _ = listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            client.settimeout(None)
            self.connections += 1
            with self._lock:
                self._conns.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            with self._lock:
                self._conns.discard(src)
                self._conns.discard(dst)
            src.close()
