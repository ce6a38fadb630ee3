"""Login CSRF: a page on another site cannot log a visitor's browser into the dashboard as someone else.

Through a real `cloudherd serve`; the browser is played by httpx, sending what a browser sends (Origin,
Fetch Metadata, the cookies the server set)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from server_harness import Served, serving


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("login")
    with serving(folder / "home", folder, interval=30) as running:
        yield running


def _login_form(browser: httpx.Client) -> str:
    page = browser.get("/ui")
    assert page.status_code == 200
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


def test_the_servers_own_login_form_logs_in(served: Served, token: str) -> None:
    with httpx.Client(base_url=served.url) as browser:
        csrf = _login_form(browser)
        answer = browser.post("/ui/login", data={"token": token, "csrf": csrf},
                              headers={"Origin": served.url, "Sec-Fetch-Site": "same-origin"})
        assert answer.status_code == 303, answer.text
        assert "cloudherd_session" in browser.cookies
        assert browser.get("/ui").status_code == 200 and "Log in" not in browser.get("/ui").text


@pytest.mark.parametrize("headers", [{"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"},
                                     {"Sec-Fetch-Site": "same-site", "Origin": "http://127.0.0.1:1"}])
def test_a_login_posted_from_another_site_is_refused(served: Served, token: str, headers: dict[str, str]) -> None:
    """Even with the form's token and cookie in hand (the worst case): the browser says where it comes from."""
    with httpx.Client(base_url=served.url) as browser:
        csrf = _login_form(browser)
        answer = browser.post("/ui/login", data={"token": token, "csrf": csrf}, headers=headers)
        assert answer.status_code == 403
        assert "another site" in answer.text
        assert "cloudherd_session" not in browser.cookies


def test_a_login_without_the_forms_token_is_refused(served: Served, token: str) -> None:
    """An old browser that sends neither Origin nor Fetch Metadata: the attacker's form cannot carry the token
    of the cookie it cannot read."""
    with httpx.Client(base_url=served.url) as browser:
        answer = browser.post("/ui/login", data={"token": token})
        assert answer.status_code == 403
        assert "cloudherd_session" not in browser.cookies
        _login_form(browser)
        forged = browser.post("/ui/login", data={"token": token, "csrf": "x" * 32})
        assert forged.status_code == 403 and "cloudherd_session" not in browser.cookies


def test_a_wrong_token_on_a_good_form_says_so(served: Served, tmp_path: Path) -> None:
    with httpx.Client(base_url=served.url) as browser:
        csrf = _login_form(browser)
        answer = browser.post("/ui/login", data={"token": "chd_nope_nope", "csrf": csrf})
        assert answer.status_code == 401 and "not valid" in answer.text
