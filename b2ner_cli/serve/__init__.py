"""``b2ner serve``: the recognizer behind a small HTTP service (``POST /extract``, ``GET /health``, ``GET /info``).

A loaded recognizer, its task and the limits make a :class:`Service` (framework-free: request checking, dynamic
batching in one worker thread, the answers); :func:`create_app` puts the routes around it and :func:`http_server`
serves it on a socket from :func:`bind`. Those two need the ``serve`` extra (Starlette and uvicorn) and say so
cleanly when it is missing.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

from ..errors import UsageError
from .batcher import Batcher, Stopping
from .listen import ListenError, bind, url_of
from .requests import ExtractRequest, RequestError, parse_request
from .service import Answer, Service, load_service
from .settings import ServeSettings

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from .server import HttpServer

__all__ = [
    "Answer",
    "Batcher",
    "ExtractRequest",
    "ListenError",
    "RequestError",
    "ServeSettings",
    "Service",
    "Stopping",
    "bind",
    "create_app",
    "http_server",
    "load_service",
    "parse_request",
    "require_extra",
    "url_of",
]


def require_extra() -> None:
    """UsageError unless Starlette and uvicorn (the ``serve`` extra) can be imported."""
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise UsageError(
            f"b2ner serve needs the serve extra ({exc.name or 'starlette or uvicorn'} is not installed).",
            "Install it: pip install 'b2ner[serve]'",
        ) from None


def create_app(service: Service) -> Starlette:
    """The Starlette app over ``service``."""
    require_extra()
    from .http import create_app as make

    return make(service)


def http_server(app: Starlette, sock: socket.socket) -> HttpServer:
    """``app`` on ``sock`` (from :func:`bind`), ready to :meth:`~HttpServer.serve`."""
    require_extra()
    from .server import HttpServer

    return HttpServer(app, sock)
