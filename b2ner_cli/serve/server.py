"""uvicorn serving the app on a socket from :func:`b2ner_cli.serve.listen.bind`. Needs the ``serve`` extra; import
through :func:`b2ner_cli.serve.http_server`.

uvicorn stops gracefully on Ctrl-C or SIGTERM (a second Ctrl-C stops at once), lets the requests in flight finish,
then raises the signal again, so that the command's error boundary reports it as any interrupted command.
"""

from __future__ import annotations

import socket

import uvicorn
from starlette.applications import Starlette

from .listen import listen


class HttpServer:
    """``app`` on a bound socket, listening from now on; served by :meth:`serve` until :meth:`stop` or a signal."""

    def __init__(self, app: Starlette, sock: socket.socket) -> None:
        self.socket = sock
        listen(sock)  # connections wait from now on, until the server takes them
        config = uvicorn.Config(app, lifespan="on", log_level="warning", access_log=False)
        self._server = uvicorn.Server(config)

    def serve(self) -> None:
        """Serve until stopped (blocks); in the main thread, Ctrl-C and SIGTERM stop it."""
        try:
            self._server.run(sockets=[self.socket])
        finally:
            self.socket.close()

    def stop(self) -> None:
        """Ask :meth:`serve` (running in another thread) to finish."""
        self._server.should_exit = True
