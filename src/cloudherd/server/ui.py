"""The dashboard at ``/ui``: server-rendered pages over the same API the REST routes use, live by SSE.

Why this shape: no build step and nothing fetched from elsewhere — Jinja2 templates and one small script
shipped in the package, so the page works offline and installs with ``pip``.  A login is an API token
kept in a cookie (HttpOnly, SameSite=Strict): the page's script never sees it.  Every form carries a
CSRF token derived from the login token (an HMAC of it, so several servers agree without shared state);
a post without it is refused.  The pages re-render their main part when ``/ui/.../live`` says something
changed: it sends a digest of the infrastructure's nodes, newest event and metrics' latest values every time
they change (level-based, as the manager is: a missed message is caught up by the next one), sampled once per
infrastructure however many pages watch it (``server/live.py``).  The plots are inline SVG drawn here.
The infrastructure page's forms also set what the manager honours (``api/client_choices.py``): a group's
suspended processes, a node's protection from scale-in and its standby; and they complete the lifecycle hooks'
open holds (``api/client_hooks.py``).  Each group's warm pool is shown apart from its nodes in service.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response, StreamingResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from cloudherd.api.auth import Principal, authenticate
from cloudherd.api.metric_history import metric_histories
from cloudherd.errors import CloudherdError, UsageError
from cloudherd.inputs import whole
from cloudherd.lifecycle import InfraState, NodeState, Process
from cloudherd.server.deps import runtime_of
from cloudherd.server.errors import clean
from cloudherd.server.plots import plot_metrics, plot_sizes

COOKIE = "cloudherd_session"
LOGIN_COOKIE = "cloudherd_login"  # the login form's CSRF token (double submit), on /ui/login only
HERE = Path(__file__).parent
RETIRED_SHOWN = 10
STATIC = {"ui.js": "text/javascript", "ui.css": "text/css"}
router = APIRouter(prefix="/ui", include_in_schema=False)
_templates = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]),
                         trim_blocks=True, lstrip_blocks=True)
# a script's name as recorded is "<spec path>#<script>" or a path: the page shows the last part
_templates.filters["short"] = lambda name: str(name).rsplit("#", 1)[-1].rsplit("/", 1)[-1]
PROCESSES = tuple(p.value for p in Process)
IN_SERVICE = ("ready", "unhealthy")  # the node states standby may be entered from (AWS: InService)
HOOK_RESULTS = ("CONTINUE", "ABANDON")  # what completes a lifecycle hook's hold


def state_class(state: Any) -> str:
    """The CSS class of a state's cell: ``state-<state>`` for any state string, known to the stylesheet or not
    (one it has no colour for is shown plain), reduced to letters, digits and dashes."""
    word = "".join(c if c.isascii() and (c.isalnum() or c == "-") else "-" for c in str(state).lower())
    return f"state-{word or 'unknown'}"


_templates.filters["state_class"] = state_class


def csrf_token(login: str) -> str:
    return hmac.new(login.encode(), b"cloudherd-ui-csrf", hashlib.sha256).hexdigest()


async def _who(request: Request) -> tuple[Principal, str] | None:
    login = request.cookies.get(COOKIE, "")
    if not login:
        return None
    who = await asyncio.to_thread(authenticate, runtime_of(request).store, login)
    return (who, login) if who is not None else None


def _page(name: str, status: int = 200, **values: Any) -> HTMLResponse:
    return HTMLResponse(clean(_templates.get_template(name).render(**values)), status_code=status,
                        headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY",
                                 "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                                                            "style-src 'self'; frame-ancestors 'none'"})


def _login_page(request: Request, error: str | None = None, status: int = 200) -> HTMLResponse:
    """The login form, with its own CSRF token: a random value in a cookie of the login path, repeated in the
    form (double submit).  A page on another site can make a browser post to ``/ui/login`` but cannot read
    or set that cookie, so it cannot log the browser in as the attacker's own user."""
    presented = request.cookies.get(LOGIN_COOKIE, "")
    value = presented if _well_formed(presented) else secrets.token_urlsafe(24)
    answer = _page("login.html", status, error=error, login_csrf=value)
    answer.set_cookie(LOGIN_COOKIE, value, httponly=True, samesite="strict", secure=request.url.scheme == "https",
                      path="/ui/login")
    return answer


def _well_formed(value: str) -> bool:
    return 20 <= len(value) <= 64 and value.isascii() and all(c.isalnum() or c in "-_" for c in value)


def _cross_site(request: Request) -> bool:
    """Whether the browser says the request comes from another site: Fetch Metadata, else the Origin."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site not in ("same-origin", "none")
    origin = request.headers.get("origin")
    return origin is not None and origin != f"{request.url.scheme}://{request.headers.get('host', '')}"


def _logged_out(request: Request, status: int = 200) -> HTMLResponse:
    """The login page for a request without a valid login: saying why when it had one (revoked since)."""
    if request.cookies.get(COOKIE):
        answer = _login_page(request, "Your login is no longer valid (its token was revoked): log in again.", 401)
        answer.delete_cookie(COOKIE, path="/ui")
        return answer
    return _login_page(request, status=status)


async def _form(request: Request) -> dict[str, str]:
    body = (await request.body())[:65536].decode(errors="replace")
    return {key: values[0] for key, values in parse_qs(body).items()}


@router.get("/static/{name}")
async def static(name: str) -> Response:
    if name not in STATIC:
        return Response(status_code=404)
    return FileResponse(HERE / "static" / name, media_type=STATIC[name], headers={"Cache-Control": "max-age=300"})


@router.get("", response_class=HTMLResponse)
@router.get("/", response_class=HTMLResponse)
async def home(request: Request) -> Response:
    found = await _who(request)
    if found is None:
        return _logged_out(request)
    who, login = found
    runtime = runtime_of(request)
    rows = runtime.store.infrastructures(owner_id=who.user_id)
    from cloudherd.api import views

    summaries = [views.summary(r) for r in rows]
    desired = {r.id: sum(g.count for g in runtime.store.infrastructure(r.id).groups) for r in rows}
    return _page("home.html", infrastructures=summaries, desired=desired, user=who.user_name, csrf=csrf_token(login),
                 fragment=request.query_params.get("fragment") == "1")


@router.post("/login")
async def login(request: Request) -> Response:
    if _cross_site(request):
        return _page("refused.html", 403, reason="a login from another site is refused: open this server's own page")
    form = await _form(request)
    expected = request.cookies.get(LOGIN_COOKIE, "")
    if not _well_formed(expected) or not hmac.compare_digest(form.get("csrf", ""), expected):
        return _login_page(request, "The login form had expired: paste the token again.", 403)
    token = form.get("token", "").strip()
    who = await asyncio.to_thread(authenticate, runtime_of(request).store, token) if token else None
    if who is None:
        return _login_page(request, "That token is not valid (unknown, revoked or mistyped).", 401)
    answer = RedirectResponse("/ui", status_code=303)
    answer.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=request.url.scheme == "https",
                      path="/ui")
    answer.delete_cookie(LOGIN_COOKIE, path="/ui/login")
    return answer


@router.post("/logout")
async def logout(request: Request) -> Response:
    answer = RedirectResponse("/ui", status_code=303)
    answer.delete_cookie(COOKIE, path="/ui")
    return answer


async def _owned(request: Request, ref: str) -> tuple[Principal, str, Any] | Response:
    found = await _who(request)
    if found is None:
        return _logged_out(request, 401)
    who, login = found
    runtime = runtime_of(request)
    try:
        infra = runtime.store.resolve(ref)
    except UsageError:
        infra = None
    if infra is None or infra.owner_id != who.user_id:
        return _page("missing.html", 404, ref=ref)
    return who, login, infra


@router.get("/infrastructures/{ref}", response_class=HTMLResponse)
async def infrastructure(request: Request, ref: str) -> Response:
    found = await _owned(request, ref)
    if isinstance(found, Response):
        return found
    _, login, infra = found
    runtime = runtime_of(request)
    view = await runtime.client.status(infra.id)
    every_event = await runtime.client.events(infra.id)  # read once: the log shown and the plot's points
    events = every_event[-40:]
    revisions = await runtime.client.history(infra.id)
    sizes = [e for e in every_event if e.kind == "sizes"][-300:]
    plots = plot_sizes(sizes, view)
    metric_plots = plot_metrics(await asyncio.to_thread(metric_histories, runtime.store, infra.id))
    # what the manager took away, newest first: a node that died stays in sight after it was replaced
    gone = [n for n in view.nodes if n.state == NodeState.TERMINATED]
    retired = sorted(gone, key=lambda n: n.updated_at, reverse=True)
    holds = await runtime.client.hooks(infra.id)
    # each group's warm pool, apart from its nodes in service (the pool is not counted in the group's size)
    pools = {g.name: [n for n in view.live if n.group == g.name and n.warm] for g in view.groups}
    cost = await runtime.client.cost(infra.id)
    return _page("infrastructure.html", infra=view, cost=cost, events=list(reversed(events)), revisions=revisions,
                 plots=plots, metric_plots=metric_plots, processes=PROCESSES, in_service=IN_SERVICE,
                 retired=retired[:RETIRED_SHOWN], holds=holds, results=HOOK_RESULTS,
                 pools={name: nodes for name, nodes in pools.items() if nodes},
                 csrf=csrf_token(login), fragment=request.query_params.get("fragment") == "1",
                 message=request.query_params.get("message"))


@router.get("/infrastructures/{ref}/nodes/{node}", response_class=HTMLResponse)
async def node_page(request: Request, ref: str, node: str) -> Response:
    found = await _owned(request, ref)
    if isinstance(found, Response):
        return found
    _, login, infra = found
    runtime = runtime_of(request)
    try:
        target = await runtime.client.node(infra.id, node)
    except UsageError:
        return _page("missing.html", 404, ref=f"{ref}/{node}")
    actions = await runtime.client.logs(infra.id, target.id)
    why = await runtime.client.why(target.id, infra.id)
    return _page("node.html", infra=infra, node=target, actions=list(reversed(actions)), why=why,
                 csrf=csrf_token(login), fragment=request.query_params.get("fragment") == "1")


@router.get("/infrastructures/{ref}/nodes/{node}/live")
async def node_live(request: Request, ref: str, node: str) -> Response:
    found = await _owned(request, ref)
    if isinstance(found, Response):
        return Response(status_code=401)
    infra_id, runtime = found[2].id, runtime_of(request)
    try:
        node_id = (await runtime.client.node(infra_id, node)).id
    except UsageError:
        return Response(status_code=404)

    def state() -> str:
        row = next((n for n in runtime.store.nodes(infra_id) if n.id == node_id), None)
        actions = [(a.id, a.exit_code, len(a.stdout or ""), len(a.stderr or ""))
                   for a in runtime.store.actions(infra_id, node_id)]
        return json.dumps([row.state if row else None, row.health if row else None, actions])

    return _stream(request, f"node {node_id}", state)


@router.get("/live")
async def live_list(request: Request) -> Response:
    found = await _who(request)
    if found is None:
        return Response(status_code=401)
    runtime, owner = runtime_of(request), found[0].user_id

    def state() -> str:
        rows = runtime.store.infrastructures(owner_id=owner)
        return json.dumps([(r.id, r.state, r.attached, sorted(n.state for n in runtime.store.nodes(r.id)))
                           for r in rows])

    return _stream(request, f"list {owner}", state)


@router.get("/infrastructures/{ref}/live")
async def live(request: Request, ref: str) -> Response:
    found = await _owned(request, ref)
    if isinstance(found, Response):
        return Response(status_code=401)
    infra_id, runtime = found[2].id, runtime_of(request)

    newest = [0]

    def state() -> str:
        row = runtime.store.infrastructure(infra_id)
        fresh = runtime.store.events_after(infra_id, newest[0])
        newest[0] = fresh[-1].id if fresh else newest[0]
        nodes = sorted((n.id, n.state, n.health or "", n.address or "", bool(n.protected), bool(n.standby),
                        bool(n.warm)) for n in runtime.store.nodes(infra_id))
        suspended = sorted((g.name, sorted((g.suspended or {}).items())) for g in row.groups)
        # not the time of the last pass: a steady fleet would re-render every pass for nothing (its metrics'
        # latest values, which the plots end at, when they change)
        latest = runtime.store.latest_samples(infra_id)
        metrics = sorted((g, m, v) for g, values in latest.items() for m, v in values.items())
        # the hooks' open holds: one opened, completed, or its deadline moved on by a heartbeat
        holds = [(w.id, w.deadline.isoformat()) for w in runtime.store.hook_waits(infra_id)]
        return json.dumps([row.state, row.attached, row.reason, newest[0], nodes, metrics, suspended, holds])

    return _stream(request, f"infrastructure {infra_id}", state)


def _stream(request: Request, key: str, state: Callable[[], str]) -> StreamingResponse:
    """``change`` events with a digest of what the page shows, each time it differs: one sampler per ``key``
    (an owner's list, an infrastructure), however many pages are open on it.  The page's login is checked
    again as the stream goes on: a revoked token ends it (``denied``)."""
    async def allowed() -> bool:
        return await _who(request) is not None

    return StreamingResponse(runtime_of(request).live.stream(key, state, allowed), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _action(request: Request, ref: str) -> tuple[Any, dict[str, str]] | Response:
    """The infrastructure a form acts on, once its CSRF token checks out (403 otherwise)."""
    found = await _owned(request, ref)
    if isinstance(found, Response):
        return found
    _, login, infra = found
    form = await _form(request)
    if not hmac.compare_digest(form.get("csrf", ""), csrf_token(login)):
        return _page("refused.html", 403, reason="the form's CSRF token is missing or wrong: reload the page")
    return infra, form


def _back(infra: Any, message: str) -> Response:
    from urllib.parse import quote

    return RedirectResponse(f"/ui/infrastructures/{infra.id}?message={quote(message)}", status_code=303)


@router.post("/infrastructures/{ref}/scale")
async def scale(request: Request, ref: str) -> Response:
    found = await _action(request, ref)
    if isinstance(found, Response):
        return found
    infra, form = found
    runtime = runtime_of(request)
    try:
        result = await runtime.client.scale(infra.id, form.get("group", ""), form.get("change", ""), run_pass=False)
    except CloudherdError as exc:
        return _back(infra, f"not scaled: {exc}")
    _pass_soon(request, infra)
    return _back(infra, f"{result.group}: {result.before} → {result.target}{result.note}")


def _pass_soon(request: Request, infra: Any) -> None:
    """The manager applies what a form changed: at once for an attached infrastructure, by a pass of its own
    otherwise (as the native routes do)."""
    runtime = runtime_of(request)
    if not infra.attached:
        runtime.spawn(lambda: runtime.client.manage([infra.id], once=True), f"pass {infra.id}")
    runtime.poke(infra.id)


async def _chosen(request: Request, key: str) -> list[str]:
    """Every value the form sent under ``key`` (checkboxes), in order, blanks left out (the body was read and
    bounded by :func:`_form` already: Starlette keeps it)."""
    body = (await request.body())[:65536].decode(errors="replace")
    return [v.strip() for v in parse_qs(body).get(key, []) if v.strip()]


@router.post("/infrastructures/{ref}/suspend")
@router.post("/infrastructures/{ref}/resume")
async def processes(request: Request, ref: str) -> Response:
    """A group's processes suspended (those ticked; none ticked: all) or resumed (none ticked: all)."""
    found = await _action(request, ref)
    if isinstance(found, Response):
        return found
    infra, form = found
    runtime = runtime_of(request)
    group, chosen = form.get("group", ""), await _chosen(request, "process")
    suspending = request.url.path.endswith("/suspend")
    try:
        if suspending:
            reason = form.get("reason", "").strip()[:500] or None
            result = await runtime.client.suspend(infra.id, group, chosen, reason=reason)
        else:
            result = await runtime.client.resume_processes(infra.id, group, chosen)
    except CloudherdError as exc:
        return _back(infra, f"not {'suspended' if suspending else 'resumed'}: {exc}")
    if not suspending:
        _pass_soon(request, infra)
    held = ", ".join(result.suspended) or "none"
    return _back(infra, f"{result.name}: {'suspended' if suspending else 'resumed'} "
                        f"{', '.join(chosen) or 'every process'}; suspended now: {held}")


@router.post("/infrastructures/{ref}/protect")
async def protect(request: Request, ref: str) -> Response:
    """A node kept from scale-in (``protected=yes``) or given back to it (``protected=no``)."""
    found = await _action(request, ref)
    if isinstance(found, Response):
        return found
    infra, form = found
    runtime = runtime_of(request)
    protected = form.get("protected", "yes") != "no"
    try:
        [node] = await runtime.client.protect(infra.id, [form.get("node", "")], protected=protected)
    except CloudherdError as exc:
        return _back(infra, f"not {'protected' if protected else 'unprotected'}: {exc}")
    _pass_soon(request, infra)
    return _back(infra, f"{node.name}: {'protected from' if protected else 'no longer protected from'} scale-in")


@router.post("/infrastructures/{ref}/standby")
async def standby(request: Request, ref: str) -> Response:
    """A node put in standby (``enter=yes``: out of service, kept, the group's size one less) or brought back
    into service (``enter=no``)."""
    found = await _action(request, ref)
    if isinstance(found, Response):
        return found
    infra, form = found
    runtime = runtime_of(request)
    enter = form.get("enter", "yes") != "no"
    try:
        [node] = await runtime.client.standby(infra.id, [form.get("node", "")], enter=enter, replace=False,
                                              run_pass=False)
    except CloudherdError as exc:
        return _back(infra, f"not {'put in standby' if enter else 'brought back'}: {exc}")
    _pass_soon(request, infra)
    return _back(infra, f"{node.name}: {'in standby' if enter else 'back in service'}")


@router.post("/infrastructures/{ref}/hook")
async def complete_hook(request: Request, ref: str) -> Response:
    """A node's open hold completed (``result``: CONTINUE or ABANDON; ``hook``: that hold only, else every open
    one of the node); the manager moves the node on at once, as the native route asks."""
    found = await _action(request, ref)
    if isinstance(found, Response):
        return found
    infra, form = found
    runtime = runtime_of(request)
    node, hook = form.get("node", ""), form.get("hook", "").strip() or None
    result = form.get("result", "").strip().upper()
    if result not in HOOK_RESULTS:
        return _back(infra, f"not completed: the result is {' or '.join(HOOK_RESULTS)}")
    if infra.state in (InfraState.DESTROYED, InfraState.DESTROYING):
        return _back(infra, f"not completed: {infra.name} is {infra.state}")
    caller = await _who(request)  # known: the form's check passed
    try:
        holds = await runtime.client.complete_hook(infra.id, node, hook, result=result, run_pass=False,
                                                   by=caller[0].user_name if caller else None)
    except CloudherdError as exc:
        return _back(infra, f"not completed: {exc}")
    _pass_soon(request, infra)
    said = "; ".join(f"{h.transition} hook {h.hook}: {h.result}" for h in holds)
    return _back(infra, f"{holds[0].node if holds else node}: {said}")


@router.post("/infrastructures/{ref}/{verb}")
async def verb(request: Request, ref: str, verb: str) -> Response:
    found = await _action(request, ref)
    if isinstance(found, Response):
        return found
    infra, form = found
    runtime = runtime_of(request)
    if verb == "attach":
        await runtime.client.attach(infra.id)
        runtime.poke(infra.id)
        return _back(infra, f"{infra.name} is attached: the server's manager keeps it")
    if verb == "detach":
        await runtime.client.detach(infra.id)
        return _back(infra, f"{infra.name} is detached: nothing keeps it now")
    if verb == "destroy":
        if form.get("confirm", "") != infra.name:
            return _back(infra, f"not destroyed: type {infra.name} to confirm")
        if infra.state in (InfraState.DESTROYED, InfraState.DESTROYING):
            return _back(infra, f"{infra.name} is {infra.state} already")
        runtime.tear_down(infra.id, infra.owner_id)
        return _back(infra, f"{infra.name} is being torn down")
    if verb == "rollback":
        revision = form.get("revision", "").strip()
        number = whole(revision, 9)
        if revision and not number:
            return _page("refused.html", 400, reason="a revision is a number from 1 (as the revisions table shows)")
        runtime.spawn(lambda: runtime.client.rollback(infra.id, number), f"rollback {infra.id}")
        return _back(infra, f"rolling back to revision {number or 'before the current one'}")
    return _page("missing.html", 404, ref=f"{ref}/{verb}")
