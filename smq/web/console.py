"""What every page and action of the console shares: the repository and settings, the templates,
who is signed in, and the CSRF token of the session."""

from __future__ import annotations

import hmac
import secrets
import threading
from collections import OrderedDict
from importlib.resources import files
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from smq.execution.continuation import Launcher
from smq.execution.operations import Operations
from smq.graph.layout import Layout, layout_graph
from smq.graph.model import Graph, build_graph
from smq.repository.console_queries import ConsoleQueries
from smq.repository.repository import Repository
from smq.settings import Settings, redact
from smq.web import present
from smq.web.config import WebConfig

TEMPLATES = str(files("smq.web").joinpath("templates"))
GRAPH_CACHE = 256  # laid-out definition versions kept
STATUSES = ("RUNNING", "WAITING", "PAUSED", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")


class Forbidden(Exception):
    """A state-changing request without a signed-in user, or without the session's CSRF token."""


class Console:
    def __init__(
        self,
        repository: Repository,
        settings: Settings,
        config: WebConfig,
        *,
        launcher: Launcher | None = None,
    ) -> None:
        self.repository = repository
        self.settings = settings
        self.config = config
        self.launcher = launcher
        self.queries = ConsoleQueries(repository.reader)
        # Autoescape everything: every value from definitions, inputs, outputs and errors is text.
        self.templates = Environment(
            loader=FileSystemLoader(TEMPLATES),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters.update(
            when=present.when,
            when_precise=present.when_precise,
            duration=present.duration,
            pretty_json=present.pretty_json,
            compact_json=present.compact_json,
            short=present.short,
        )
        self.templates.globals.update(statuses=STATUSES, database=redact(settings.database_url))
        self._graphs: OrderedDict[tuple[str, int], tuple[Graph, Layout]] = OrderedDict()
        self._graphs_lock = threading.Lock()

    def graph(self, state_machine_id: str, version: int, definition: dict[str, Any]) -> tuple[Graph, Layout]:
        """A stored version's graph and layout, laid out once (a version never changes): an execution
        page then only colours it."""
        key = (state_machine_id, version)
        with self._graphs_lock:
            if key in self._graphs:
                self._graphs.move_to_end(key)
                return self._graphs[key]
        graph = build_graph(definition)
        laid_out = (graph, layout_graph(graph))
        with self._graphs_lock:
            self._graphs[key] = laid_out
            while len(self._graphs) > GRAPH_CACHE:
                self._graphs.popitem(last=False)
        return laid_out

    # ------------------------------------------------------------------ who

    def user(self, request: Request) -> str | None:
        name = request.session.get("user")
        return name if isinstance(name, str) and name in self.config.users else None

    def csrf_token(self, request: Request) -> str:
        token = request.session.get("csrf")
        if not isinstance(token, str):
            token = secrets.token_urlsafe(32)
            request.session["csrf"] = token
        return token

    def check_csrf(self, request: Request, form: Any) -> None:
        expected = request.session.get("csrf")
        given = form.get("csrf")
        if not isinstance(expected, str) or not isinstance(given, str):
            raise Forbidden("the form's CSRF token is missing: reload the page and try again")
        if not hmac.compare_digest(expected, given):
            raise Forbidden("the form's CSRF token is wrong: reload the page and try again")

    def actor(self, request: Request) -> str:
        """Who acts: only a signed-in user may (read-only without SMQ_WEB_USERS)."""
        user = self.user(request)
        if self.config.read_only:
            raise Forbidden("the console is read-only: no users are configured (SMQ_WEB_USERS)")
        if user is None:
            raise Forbidden("sign in to act")
        return f"web:{user}"

    def operations_for(self, actor: str) -> Operations:
        return Operations(self.repository, self.settings, launcher=self.launcher, actor=actor)

    # ------------------------------------------------------------------ pages

    def render(self, request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        context.update(
            request=request,
            user=self.user(request),
            read_only=self.config.read_only,
            csrf=self.csrf_token(request),
            path=request.url.path,
            flash=request.session.pop("flash", None),
        )
        html = self.templates.get_template(template).render(**context)
        return HTMLResponse(html, status_code=status_code)
