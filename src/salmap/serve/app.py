"""The Starlette application of `salmap serve`."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from salmap.errors import SalmapError

from .engine import Engine
from .reports import ReportFolder
from .routes import ClientError, Pages, error_response

LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")
# the page loads nothing from elsewhere, and no other site may frame it
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; "
    "style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class SecurityHeaders:
    """ASGI middleware that adds `SECURITY_HEADERS` to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_secured)


def create_app(
    engine: Engine,
    reports: ReportFolder | None = None,
    curve_steps: int | None = None,
    allowed_hosts: tuple[str, ...] = LOCAL_HOSTS,
) -> Starlette:
    """The page over `engine`: `reports` for the reports tab, `curve_steps` the default steps of
    the deletion and insertion curves (None: the input height, RISE's), `allowed_hosts` the host
    names the page answers to (a guard against DNS rebinding; "*" for any)."""
    pages = Pages(engine, reports, curve_steps)
    image = "/api/images/{image}"
    routes = [
        Route("/", pages.index),
        Route("/static/{name}", pages.static),
        Route("/api/info", pages.info),
        Route("/api/samples/{name}", pages.sample, methods=["POST"]),
        Route("/api/samples/{name}/thumbnail.jpg", pages.thumbnail),
        Route("/api/images", pages.upload, methods=["POST"]),
        Route(f"{image}/view.jpg", pages.view),
        Route(f"{image}/maps/{{method}}", pages.saliency),
        Route(f"{image}/maps/{{method}}/map.{{kind:str}}", pages.download),
        Route(f"{image}/curves/{{method}}", pages.faithfulness),
        Route(f"{image}/results.json", pages.results),
        Route("/api/reports", pages.report_list),
        Route("/api/reports/figures/{number}", pages.report_figure),
    ]

    async def refused(_request: Request, error: Exception) -> Response:
        if isinstance(error, ClientError):
            return error_response(error.status, error.message)
        if isinstance(error, HTTPException):
            return error_response(error.status_code, str(error.detail))
        return error_response(400, str(error))

    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts)),
        ],
        exception_handlers={ClientError: refused, SalmapError: refused, HTTPException: refused},
    )
    app.state.pages = pages
    return app
