"""The Starlette app: ``POST /extract``, ``GET /health`` and ``GET /info``, and no other route.

Needs the ``serve`` extra (``pip install 'b2ner[serve]'``); import it through :func:`b2ner_cli.serve.create_app`,
which says so cleanly when it is missing. Every error is a JSON object ``{"error": ..., "hint": ...}`` with a 4xx
status for what the client can fix (a 5xx for the rest); the service keeps serving after any of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import B2nerError, InputError, UsageError
from .batcher import Stopping
from .requests import BAD_REQUEST, RequestError, body_too_large
from .service import Service

ROUTES = "POST /extract, GET /health and GET /info"
log = logging.getLogger("uvicorn.error")


def create_app(service: Service) -> Starlette:
    """The app over ``service`` (kept as ``app.state.service``); the end of its lifespan closes the batcher."""

    async def extract(request: Request) -> Response:
        body = await _read_body(request, service.settings.max_body_bytes)
        parsed = await run_in_threadpool(service.parse, body)
        try:
            records = await asyncio.wrap_future(service.submit(parsed))
        except (UsageError, InputError) as error:  # the recognizer refused something in this request
            raise RequestError(BAD_REQUEST, error.message, error.hint) from None
        except Stopping as error:
            raise RequestError(503, error.message, "Send the request again when the service is back.") from None
        except B2nerError as error:
            raise RequestError(500, error.message, error.hint) from None
        except Exception as error:  # a bug: the traceback goes to the log, the client gets one line
            log.error("POST /extract failed", exc_info=error)
            raise RequestError(500, f"Internal error ({type(error).__name__}); see the service's log.") from None
        return JSONResponse(service.answer(records).to_dict())

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def info(request: Request) -> Response:
        return JSONResponse(service.info())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            service.close()

    app = Starlette(
        routes=[
            Route("/extract", extract, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
            Route("/info", info, methods=["GET"]),
        ],
        exception_handlers={RequestError: _request_error, HTTPException: _http_error},  # type: ignore[dict-item]
        lifespan=lifespan,
    )
    app.state.service = service
    return app


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused (413) as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise body_too_large(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise body_too_large(limit)
    return bytes(body)


async def _request_error(request: Request, error: RequestError) -> Response:
    return JSONResponse(error.to_dict(), status_code=error.status)


async def _http_error(request: Request, error: HTTPException) -> Response:
    """404 and 405 (and any other the framework raises) as JSON."""
    where = f"{request.method} {request.url.path}"
    if error.status_code == 404:
        body = {"error": f"No route {where}.", "hint": f"The routes are {ROUTES}."}
    elif error.status_code == 405:
        body = {"error": f"Method {request.method} is not allowed on {request.url.path}.",
                "hint": f"The routes are {ROUTES}."}  # fmt: skip
    else:
        body = {"error": f"{error.detail} ({where})."}
    return JSONResponse(body, status_code=error.status_code, headers=error.headers)
