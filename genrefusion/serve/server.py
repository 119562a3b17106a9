"""Run the app on uvicorn in a background thread (tests, benchmarks, notebooks).

    with BackgroundServer(create_app("runs/demo")) as srv:
        requests.get(srv.url + "/health")
"""
from __future__ import annotations

import socket
import threading
import time

from ..errors import GenreFusionError


def listen_socket(host: str, port: int) -> socket.socket:
    """A bound TCP socket for uvicorn's ``sockets=``. The protocol must be IPPROTO_TCP, not 0: asyncio sets
    TCP_NODELAY only on accepted sockets whose ``proto`` says TCP, and without it every keep-alive request after
    the first waits ~40 ms (Nagle + delayed ACK on the response's second write)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


class BackgroundServer:
    """uvicorn serving ``app`` on ``host`` and a free port, started on enter and stopped on exit."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning",
                 start_timeout: float = 60.0):
        import uvicorn

        self.sock = listen_socket(host, port)
        self.host, self.port = self.sock.getsockname()[:2]
        self.url = f"http://{self.host}:{self.port}"
        # lifespan "on": the app's warm-up (if any) runs before the server reports started
        self.server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       name="genrefusion-uvicorn", daemon=True)
        self.start_timeout = start_timeout

    def __enter__(self) -> "BackgroundServer":
        self.thread.start()
        deadline = time.monotonic() + self.start_timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise GenreFusionError(f"server on {self.url} did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(timeout=10)
        self.sock.close()

    def __exit__(self, *exc) -> None:
        self.stop()
