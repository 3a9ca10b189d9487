"""Sign-in for the UI: each user's own gateway token in a signed session cookie.

The cookie (Starlette's session, signed with the storage secret; HttpOnly, SameSite=Lax,
Secure behind TLS) holds the token the user typed, the role the gateway reported for
it and when the sign-in ends. Every page is built only for a signed-in user (or when
the gateway says auth is off); every gateway call carries that user's token, so the
gateway's roles decide. The UI hides what the role may not do, but never enforces it."""

from __future__ import annotations

import functools
import inspect
import logging
import math
import secrets
import time
import weakref
from dataclasses import dataclass
from urllib.parse import quote

import grpc
from fastapi import Request
from fastapi.responses import RedirectResponse
from nicegui import app, ui
from nicegui.client import Client

from kubetune.common.v1 import options_pb2
from kubetune.gateway.v1 import gateway_pb2
from ui.context import ctx

log = logging.getLogger(__name__)

KEY = "kubetune"  # the session cookie's entry
CSRF_KEY = "kubetune_csrf"
ROLE_NAMES = {options_pb2.ROLE_VIEWER: "viewer", options_pb2.ROLE_EDITOR: "editor", options_pb2.ROLE_ADMIN: "admin"}
RANK = {"viewer": 1, "editor": 2, "admin": 3}
SIGN_IN = "/sign-in"
WHO_DEADLINE_S = 5


@dataclass(frozen=True)
class Identity:
    role: str
    auth: bool  # False: the gateway has auth off, everyone is admin
    token: str = ""
    expires: float = math.inf

    @property
    def expired(self) -> bool:
        return time.time() >= self.expires


# Who each open page (NiceGUI client) belongs to; set when the page is built, read by
# its timers and handlers, gone with the client.
_identities: weakref.WeakKeyDictionary[Client, Identity] = weakref.WeakKeyDictionary()


def current() -> Identity | None:
    """The identity of the page being served; None outside a page or when the gateway
    could not be asked (the page then shows the gateway unreachable)."""
    try:
        client = ui.context.client
    except RuntimeError:
        return None
    return _identities.get(client)


def token() -> str:
    identity = current()
    return identity.token if identity is not None and not identity.expired else ""


def may(role: str) -> bool:
    """Whether the signed-in user's role reaches `role` (for showing a button). Unknown
    (the gateway unreachable): shown, since the gateway refuses what is not allowed."""
    identity = current()
    return identity is None or RANK[identity.role] >= RANK[role]


def show_if(role: str, element):
    """`show_if("editor", ui.button(...))`: hides the element from lesser roles."""
    element.set_visibility(may(role))
    return element


def _safe_next(path: str | None) -> str:
    # Only a path on this site: never `//evil.example` or a full URL.
    path = path or "/"
    return path if path.startswith("/") and not path.startswith("//") and "\\" not in path else "/"


def _to_sign_in(path: str, reason: str = "") -> RedirectResponse:
    query = f"?next={quote(path, safe='/')}" + (f"&{reason}=1" if reason else "")
    return RedirectResponse(SIGN_IN + query, status_code=303)


async def _who(token: str) -> gateway_pb2.WhoAmIResponse:
    return await ctx.base.as_user(token).call("WhoAmI", gateway_pb2.WhoAmIRequest(), timeout=WHO_DEADLINE_S)


async def admit(request: Request) -> RedirectResponse | None:
    """At a page's build: None to build it (its identity recorded), or the way to sign-in."""
    client = ui.context.client
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    held = request.session.get(KEY)
    if held and time.time() >= held.get("expires", 0):
        request.session.pop(KEY, None)
        return _to_sign_in(path, "expired")
    try:
        who = await _who(held["token"] if held else "")
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
            request.session.pop(KEY, None)  # a token since revoked signs its holder out
            return _to_sign_in(path, "revoked" if held else "")
        return None  # gateway down: nothing to protect, the page says so
    if not who.auth_enabled:
        _identities[client] = Identity(role="admin", auth=False)
    else:
        # The role as the gateway sees it now: a role changed in the tokens file shows at once.
        _identities[client] = Identity(role=ROLE_NAMES[who.role], auth=True, token=held["token"],
                                       expires=held["expires"])
    return None


def signed_in(page):
    """Wraps a page builder: it runs only for a signed-in user (see `admit`)."""
    params = [p for p in inspect.signature(page).parameters.values() if p.name != "request"]

    @functools.wraps(page)
    async def gated(request: Request, **kwargs):
        redirect = await admit(request)
        if redirect is not None:
            return redirect
        return await page(**kwargs)

    gated.__signature__ = inspect.Signature(
        [inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request), *params])
    return gated


def header_badge() -> None:
    """In the header: who is signed in and a way out, or that auth is off; and, for a
    page left open past the end of its sign-in, the way back to sign-in."""
    identity = current()
    if identity is None:
        return
    if not identity.auth:
        with ui.chip("auth off", icon="lock_open", color="orange-2").props("dense").classes("text-xs auth-off").mark(
                "auth-off"):
            ui.tooltip("The gateway has no tokens configured: anyone who reaches this page acts as admin. "
                       "Fine on loopback (make up), never on a network.")
        return
    ui.chip(identity.role, icon="person", color="blue-1").props("dense").classes("text-xs role-chip").mark("role-chip")
    ui.button("Sign out", icon="logout", on_click=lambda: ui.navigate.to("/auth/sign-out")).props(
        "flat dense no-caps color=grey-8").classes("sign-out").mark("sign-out")

    def check():
        if identity.expired:
            ui.navigate.to(f"{SIGN_IN}?expired=1")

    ui.timer(min(30.0, max(1.0, ctx.settings.session_s / 4)), check)


MESSAGES = {
    "invalid": "That token is not valid.",
    "expired": "Your session has ended: sign in again.",
    "revoked": "Your token is no longer accepted: sign in with another.",
    "signed_out": "You are signed out.",
    "stale": "The form had expired: try again.",
    "unavailable": "The gateway does not answer; try again in a moment.",
}


async def sign_in_page(request: Request, next: str = "/", invalid: str = "", expired: str = "",
                       revoked: str = "", signed_out: str = "", stale: str = "", unavailable: str = ""):
    flags = {"invalid": invalid, "expired": expired, "revoked": revoked, "signed_out": signed_out,
             "stale": stale, "unavailable": unavailable}
    csrf = request.session.get(CSRF_KEY) or secrets.token_urlsafe(16)
    request.session[CSRF_KEY] = csrf
    ui.page_title("Sign in · kubetune")
    ui.colors(primary="#3b5bdb")
    ui.query("body").style("background-color: #f6f7fb")
    with ui.card().classes("mx-auto mt-24 w-96"):
        ui.label("kubetune").classes("text-h5 text-weight-bold text-primary")
        ui.label("Sign in with the token your administrator gave you (the gateway's viewer, "
                 "editor or admin token).").classes("text-body2 text-grey-8")
        for flag, text in MESSAGES.items():
            if flags[flag]:
                ui.label(text).classes(f"text-body2 {'text-negative' if flag in ('invalid', 'unavailable') else 'text-grey-9'}"
                                       ).mark("sign-in-message")
        # A plain form posted to the server: the session cookie can only be set on an HTTP response.
        ui.html(f"""
<form method="post" action="/auth/sign-in" class="flex flex-col gap-3 w-full">
  <input type="hidden" name="csrf" value="{csrf}">
  <input type="hidden" name="next" value="{_escape(_safe_next(next))}">
  <label for="token" class="text-body2 text-grey-9">Token</label>
  <input id="token" name="token" type="password" autocomplete="current-password" required autofocus
         class="border rounded px-3 py-2">
  <button type="submit" class="q-btn bg-primary text-white rounded px-3 py-2">Sign in</button>
</form>""", sanitize=False).classes("w-full")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")


async def sign_in(request: Request):
    form = await request.form()
    nxt = _safe_next(str(form.get("next", "/")))
    expected = request.session.get(CSRF_KEY)
    if not expected or not secrets.compare_digest(str(form.get("csrf", "")), expected):
        return _to_sign_in(nxt, "stale")
    presented = str(form.get("token", "")).strip()
    if not presented:
        return _to_sign_in(nxt, "invalid")
    try:
        who = await _who(presented)
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
            log.info("sign-in refused: invalid token")
            return _to_sign_in(nxt, "invalid")
        return _to_sign_in(nxt, "unavailable")
    request.session.pop(CSRF_KEY, None)
    if who.auth_enabled:
        request.session[KEY] = {"token": presented, "role": ROLE_NAMES[who.role],
                                "expires": time.time() + ctx.settings.session_s}
        log.info("signed in as %s", ROLE_NAMES[who.role])
    return RedirectResponse(nxt, status_code=303)


async def sign_out(request: Request):
    request.session.pop(KEY, None)
    return RedirectResponse(f"{SIGN_IN}?signed_out=1", status_code=303)


def register() -> None:
    ui.page(SIGN_IN)(sign_in_page)
    app.add_api_route("/auth/sign-in", sign_in, methods=["POST"])
    app.add_api_route("/auth/sign-out", sign_out, methods=["GET"])
