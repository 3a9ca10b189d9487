# Named to run before the page tests: NiceGUI's simulated user gives each test its own event loop, and a
# gateway channel cached by an earlier test in this process can fail the WhoAmI call (seen only in the harness).
"""The UI with auth off (the shared platform has no tokens, as `make up`): no sign-in,
the header says so, every control is there. The signed-in side is in
tests/e2e/test_auth.py, against `kubetune up` with tokens."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


async def test_auth_off_is_said_in_the_header_and_hides_nothing(user):
    await user.open("/")
    await user.should_see(marker="auth-off")
    await user.should_see("Start a study")
    await user.should_not_see(marker="sign-out")
    await user.open("/data")
    await user.should_see(marker="auth-off")
    await user.should_see(marker="register-button")


async def test_a_gateway_that_does_not_answer_shows_the_page_without_sign_in(offline_user):
    await offline_user.open("/")
    await offline_user.should_see("gateway unreachable")
    await offline_user.should_not_see(marker="auth-off")
