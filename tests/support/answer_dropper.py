"""A TCP proxy in front of the API that loses answers: the request reaches the API and is
applied, and the connection is closed before the answer gets back (a load balancer's reset, a
network cut after the request went out)."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

CHUNK = 65536


class AnswerDropper:
    """Forwards connections to ``upstream``; the first ``drops`` answers are thrown away."""

    def __init__(self, upstream: tuple[str, int], drops: int) -> None:
        self._upstream = upstream
        self._drops_left = drops
        self._guard = threading.Lock()
        self.dropped = 0
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"

    def drop_next(self, drops: int) -> None:
        """Throw the next ``drops`` answers away."""
        with self._guard:
            self._drops_left = drops

    def serve(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:  # closed
                return
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def close(self) -> None:
        self._server.close()

    def _connect(self, client: socket.socket) -> None:
        """Pipe one connection; an answer to drop closes it instead of going back."""
        upstream = socket.create_connection(self._upstream)
        threading.Thread(target=_pump, args=(client, upstream), daemon=True).start()
        _pump(upstream, client, lose=self._take_a_drop)

    def _take_a_drop(self) -> bool:
        with self._guard:
            if self._drops_left <= 0:
                return False
            self._drops_left -= 1
            self.dropped += 1
            return True


def _pump(
    source: socket.socket, sink: socket.socket, lose: Callable[[], bool] = lambda: False
) -> None:
    """Copy ``source`` to ``sink`` until either closes, or ``lose`` says to drop what came:
    then both close (the answer was made, and is lost on the way)."""
    try:
        while chunk := source.recv(CHUNK):
            if lose():
                break
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        for end in (source, sink):
            # shutdown first: a close alone, while the other pump waits in recv on the socket,
            # sends nothing (the caller waited out its whole timeout to see the answer lost).
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()


@contextmanager
def dropping_answers(url: str, drops: int) -> Iterator[AnswerDropper]:
    """A proxy in front of the API at ``url`` (``http://host:port``) losing its first answers."""
    host, port = url.removeprefix("http://").rstrip("/").rsplit(":", 1)
    proxy = AnswerDropper((host, int(port)), drops)
    threading.Thread(target=proxy.serve, daemon=True).start()
    try:
        yield proxy
    finally:
        proxy.close()
