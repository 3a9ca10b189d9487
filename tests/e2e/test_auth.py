"""Auth end to end: `kubetune up` with gateway tokens (inline and a tokens file) as a
user runs it, the CLI with and without a token, a tokens file changed under the
running gateway, and the UI's sign-in in Chromium: roles hide buttons, sign-out, an
expired session sent back to sign-in, the cookie's flags."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from kubetune.gateway.v1 import gateway_pb2, gateway_pb2_grpc
from tests.e2e.conftest import need_chromium
from tests.e2e.test_up import KUBETUNE, read_until, start_up
from testing.browser import sign_in
from testing.servers import free_port

pytestmark = pytest.mark.slow

TOKENS = {"viewer": "kt-e2e-viewer-41f3", "editor": "kt-e2e-editor-9c2d"}
FILE_ADMIN = "kt-e2e-file-admin-77ab"
SESSION_S = 30
OWN_TOKEN_PREFIX = "kubetune-up-"  # how `kubetune up` names its own admin token


class Up:
    def __init__(self, home: Path, ports: dict[str, int], proc: subprocess.Popen, output: str, tokens_file: Path):
        self.home, self.ports, self.proc, self.output, self.tokens_file = home, ports, proc, output, tokens_file

    @property
    def gateway(self) -> str:
        return f"127.0.0.1:{self.ports['gateway']}"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['ui']}"

    def who(self, token: str) -> gateway_pb2.WhoAmIResponse:
        with grpc.insecure_channel(self.gateway) as ch:
            return gateway_pb2_grpc.GatewayStub(ch).WhoAmI(
                gateway_pb2.WhoAmIRequest(), metadata=(("authorization", f"Bearer {token}"),), timeout=10)

    def cli(self, *args: str, token: str = "") -> subprocess.CompletedProcess:
        env = {**os.environ, "KUBETUNE_GATEWAY": self.gateway}
        env.pop("KUBETUNE_TOKEN", None)
        if token:
            env["KUBETUNE_TOKEN"] = token
        return subprocess.run([str(KUBETUNE), *args], capture_output=True, text=True, timeout=120, env=env)


@pytest.fixture(scope="module")
def secured_up(tmp_path_factory):
    home = tmp_path_factory.mktemp("auth-up")
    tokens_file = home / "tokens"
    tokens_file.write_text(f"# a mounted Secret, as on Kubernetes\n{FILE_ADMIN} admin\n")
    ports = {name: free_port() for name in ("nats", "mlflow", "data", "tuning", "tracking", "registry",
                                            "gateway", "ui", "metrics", "worker")}
    env = {"KUBETUNE_GATEWAY_TOKENS": ",".join(f"{t}:{r}" for r, t in TOKENS.items()),
           "KUBETUNE_GATEWAY_TOKENS_FILE": str(tokens_file), "KUBETUNE_UI_SESSION_S": str(SESSION_S)}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # `kubetune up` reads them as a user's shell would pass them
    try:
        proc = start_up(home, ports)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    try:
        output = "".join(read_until(proc, "Ctrl-C stops everything", timeout=240))
        yield Up(home, ports, proc, output, tokens_file)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_up_with_tokens_registers_the_sample_with_its_own_token(secured_up):
    assert "registered the sample data as dataset sample@" in secured_up.output
    assert "sign in with a gateway token" in secured_up.output
    listed = secured_up.cli("data", "list", "--json", token=TOKENS["viewer"])
    assert listed.returncode == 0 and '"sample"' in listed.stdout, listed.stderr


def test_cli_with_a_token_works_and_without_one_is_refused(secured_up):
    refused = secured_up.cli("data", "list")
    assert refused.returncode != 0 and "missing bearer token" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
    wrong = secured_up.cli("data", "list", token="not-a-token")
    assert wrong.returncode != 0 and "invalid token" in wrong.stderr
    viewer = secured_up.cli("study", "list", token=TOKENS["viewer"])
    assert viewer.returncode == 0, viewer.stderr
    denied = secured_up.cli("data", "register", str(Path(__file__).parents[2] / "services/data/sample"),
                            "--name", "by-viewer", token=TOKENS["viewer"])
    assert denied.returncode != 0 and "needs the editor role" in denied.stderr
    assert secured_up.who(TOKENS["editor"]).role == 2 and secured_up.who(FILE_ADMIN).auth_enabled


def test_a_changed_tokens_file_takes_effect_without_a_restart(secured_up):
    gateway_pid = secured_up_pid(secured_up, "gateway")
    added = "kt-e2e-added-viewer-0d9e"
    # As Kubernetes updates a Secret volume: a new file swapped in.
    new = secured_up.tokens_file.with_name("tokens.new")
    new.write_text(f"{FILE_ADMIN} admin\n{added} viewer\n")
    new.replace(secured_up.tokens_file)
    took = wait_until(lambda: accepted(secured_up, added), 10)
    assert secured_up.who(added).role == 1
    new.write_text(f"{added} viewer\n")  # the file admin revoked
    new.replace(secured_up.tokens_file)
    wait_until(lambda: not accepted(secured_up, FILE_ADMIN), 10)
    assert secured_up_pid(secured_up, "gateway") == gateway_pid, "the gateway was restarted"
    print(f"\nnew token accepted {took:.1f}s after the file changed")


def test_own_admin_token_is_never_printed_or_logged(secured_up):
    assert OWN_TOKEN_PREFIX not in secured_up.output
    logs = list((secured_up.home / "logs").glob("*.log"))
    assert len(logs) >= 8
    for log in logs:
        assert OWN_TOKEN_PREFIX not in log.read_text(errors="replace"), log.name
        for token in (*TOKENS.values(), FILE_ADMIN):
            assert token not in log.read_text(errors="replace"), (log.name, token)


def secured_up_pid(up: Up, part: str) -> int:
    import json

    state = json.loads((up.home / "platform.json").read_text())
    assert any(p["name"] == part for p in state["parts"])
    import psutil

    for child in psutil.Process(up.proc.pid).children(recursive=True):
        cmd = child.cmdline()
        if part == "gateway" and cmd[-2:] == ["-m", "gateway"]:
            return child.pid
    raise AssertionError(f"no {part} process")


def accepted(up: Up, token: str) -> bool:
    try:
        up.who(token)
        return True
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.UNAUTHENTICATED:
            raise
        return False


def wait_until(check, timeout: float) -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout}s")
        time.sleep(0.2)
    return time.monotonic() - start


# --- the UI in Chromium ------------------------------------------------------------

@pytest.fixture
async def signed_page(secured_up, page):
    need_chromium()
    return page


async def visible(locator) -> int:
    return sum([await locator.nth(i).is_visible() for i in range(await locator.count())])


@pytest.mark.browser
async def test_sign_in_as_editor_shows_its_role_and_a_secure_cookie(secured_up, signed_page):
    page, base = signed_page, secured_up.ui_url
    await sign_in(page, base, "wrong-token")
    await page.get_by_text("That token is not valid.").wait_for()
    await page.get_by_label("Token").fill(TOKENS["editor"])
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(base + "/")
    await page.get_by_role("button", name="Start a study").wait_for()
    await page.locator(".role-chip").get_by_text("editor").wait_for()
    assert await page.locator(".auth-off").count() == 0
    cookie = next(c for c in await page.context.cookies() if c["name"] == "kubetune_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    assert TOKENS["editor"] not in await page.content()
    await page.goto(base + "/data")
    await page.get_by_role("button", name="Register", exact=True).wait_for()
    await page.goto(base + "/tune")
    await page.get_by_role("button", name="Start study").wait_for()
    # The page's checks as you type reach the tuning service with the editor's own token.
    await page.get_by_label("Study name (optional)", exact=True).fill("Bad Name!")
    await page.get_by_text("name: use lowercase letters").first.wait_for(timeout=30_000)


@pytest.mark.browser
async def test_a_viewer_sees_no_start_or_register(secured_up, signed_page):
    page, base = signed_page, secured_up.ui_url
    await sign_in(page, base, TOKENS["viewer"], "/data")
    await page.wait_for_url(base + "/data")
    await page.locator(".role-chip").get_by_text("viewer").wait_for()
    await page.get_by_text("sample", exact=True).first.wait_for()  # a viewer still reads
    assert await visible(page.get_by_role("button", name="Register")) == 0
    assert await visible(page.get_by_text("Add a dataset")) == 0
    await page.goto(base + "/")
    await page.get_by_text("Platform").wait_for()
    assert await visible(page.get_by_role("button", name="Start a study")) == 0
    await page.goto(base + "/tune")
    await page.get_by_text("Search space").wait_for()
    assert await visible(page.get_by_role("button", name="Start study")) == 0
    # The gateway, not the UI, is what refuses: the viewer's own token is what it sees.
    assert secured_up.who(TOKENS["viewer"]).role == 1


@pytest.mark.browser
async def test_sign_out_goes_back_to_sign_in(secured_up, signed_page):
    page, base = signed_page, secured_up.ui_url
    await sign_in(page, base, TOKENS["editor"])
    await page.wait_for_url(base + "/")
    await page.locator(".sign-out").click()
    await page.wait_for_url("**/sign-in**")
    await page.get_by_text("You are signed out.").wait_for()
    await page.goto(base + "/experiments")
    await page.wait_for_url("**/sign-in?next=/experiments")


@pytest.mark.browser
async def test_an_expired_session_goes_back_to_sign_in(secured_up, signed_page):
    page, base = signed_page, secured_up.ui_url
    before_sign_in = time.monotonic()
    await sign_in(page, base, TOKENS["viewer"])
    await page.wait_for_url(base + "/")
    # The page left open: its timer (every SESSION_S / 4) sends it to sign-in once the session ends.
    await page.wait_for_url("**/sign-in?expired=1", timeout=(SESSION_S + 40) * 1000)
    assert time.monotonic() - before_sign_in >= SESSION_S - 0.5
    await page.get_by_text("Your session has ended").wait_for()
    await page.goto(base + "/data")
    await page.wait_for_url("**/sign-in**")
