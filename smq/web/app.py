"""`create_app`: the console as an ASGI application (Starlette), served by `smq web` with uvicorn.

Why Starlette: a small, mainstream ASGI toolkit whose sync endpoints run in a thread pool (smq's
repository is synchronous SQLAlchemy), with Jinja2 templates, signed-cookie sessions (itsdangerous)
and an in-process test client; uvicorn serves it without a reverse proxy on 127.0.0.1.

Every response carries a Content-Security-Policy that allows scripts and styles from the console's
own static files only: even a value that slipped past escaping could not run.
"""

from __future__ import annotations

import gc
from importlib.resources import files
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from smq.execution.continuation import Launcher
from smq.repository.repository import Repository
from smq.settings import Settings
from smq.web import actions, pages
from smq.web.config import WebConfig
from smq.web.console import Console

STATIC = str(files("smq.web").joinpath("static"))
GRAPH_CSS = files("smq.graph").joinpath("graph.css").read_bytes()
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


class SecurityHeaders:
    """Adds SECURITY_HEADERS to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(key.encode(), value.encode()) for key, value in SECURITY_HEADERS.items()]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


def graph_css(request: Request) -> Response:
    """The graph's stylesheet, the one `smq definitions graph` embeds in a standalone SVG."""
    return Response(GRAPH_CSS, media_type="text/css", headers={"cache-control": "max-age=3600"})


def settle_heap() -> None:
    """Move everything the start-up created (modules, SQLAlchemy, templates: ~100,000 objects) out of
    the cyclic garbage collector's reach. A full collection walks every tracked object, and a graph
    layout allocates enough to trigger one every few requests: measured, it turned a 30 ms graph into
    110 ms about one time in ten. Called once by `smq web` before it serves."""
    gc.collect()
    gc.freeze()


def create_app(
    repository: Repository,
    settings: Settings,
    config: WebConfig,
    *,
    launcher: Launcher | None = None,
) -> Starlette:
    """The console over `repository`, acting with `settings` (broker, handlers) as the CLI does."""
    both = ["GET", "POST"]
    routes: list[Any] = [
        Route("/", pages.overview),
        Route("/fragments/overview", pages.overview_live),
        Route("/machines", pages.machines),
        Route("/machines/{machine_id}", pages.machine),
        Route("/machines/{machine_id}/compare", pages.compare),
        Route("/machines/{machine_id}/definition.json", pages.definition_json),
        Route("/executions", pages.executions),
        Route("/executions/{execution_id}", pages.execution),
        Route("/executions/{execution_id}/state.json", pages.execution_state),
        Route("/executions/{execution_id}/{action}", actions.execution_action, methods=both),
        Route("/dead", pages.dead_letters),
        Route("/dead/{task_id}", pages.dead_letter),
        Route("/dead/{task_id}/{action}", actions.dead_action, methods=both),
        Route("/waiting", pages.waiting),
        Route("/waiting/message", actions.send_message, methods=both),
        Route("/waiting/answer/{action}", actions.answer_wait, methods=both),
        Route("/login", actions.login, methods=both),
        Route("/logout", actions.logout, methods=["POST"]),
        Route("/static/graph.css", graph_css),
        Route("/favicon.ico", lambda request: Response(status_code=204)),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    middleware = [
        Middleware(SecurityHeaders),
        Middleware(
            SessionMiddleware,
            secret_key=config.secret,
            session_cookie="smq_console",
            max_age=8 * 3600,
            same_site="strict",
            https_only=config.secure_cookies,
        ),
    ]
    app = Starlette(routes=routes, middleware=middleware)
    app.state.console = Console(repository, settings, config, launcher=launcher)
    return app
