"""A TCP relay on 127.0.0.1 that a test can cut and restore: a server restart only its clients see.

The machine's PostgreSQL is shared with other work, so a test must not restart it. Processes under test
are pointed at this relay instead; `cut()` resets every relayed connection and refuses new ones (each
accepted connection is closed at once, as a server still starting up does), `restore()` lets them through
again.
"""

from __future__ import annotations

import socket
import threading
from types import TracebackType


class TcpRelay:
    def __init__(self, upstream: tuple[str, int], host: str = "127.0.0.1") -> None:
        self.upstream = upstream
        self._listener = socket.create_server((host, 0))  # another address: a veth end for a network namespace
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._down = False
        self._closed = False
        self.cuts = 0
        self.refused = 0  # connections refused while cut: clients tried to reconnect
        threading.Thread(target=self._accept, name="tcp-relay", daemon=True).start()

    def __enter__(self) -> TcpRelay:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def cut(self) -> None:
        """Reset every relayed connection and refuse new ones until `restore()`."""
        with self._lock:
            self._down = True
            self.cuts += 1
            sockets, self._open = self._open, set()
        for s in sockets:
            _reset(s)

    def restore(self) -> None:
        with self._lock:
            self._down = False

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                down = self._down
            if down:
                self.refused += 1
                _reset(client)
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                _reset(client)
                continue
            server.settimeout(None)
            with self._lock:
                self._open.update((client, server))
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open.discard(source)
                self._open.discard(sink)
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def _reset(s: socket.socket) -> None:
    # SO_LINGER 0: close sends RST, as the peer of a killed server sees it.
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    except OSError:
        pass
    try:
        s.shutdown(socket.SHUT_RDWR)  # wakes the pump thread blocked reading it
    except OSError:
        pass
    try:
        s.close()
    except OSError:
        pass
