"""One error table, read both ways: every error class of cloudherd, raised in a route of the REST service,
comes back from the server's client as the same class with the same exit code and message — so a command run
through a server exits as it would beside the state (a name taken is a usage error, 2, not "busy", 3)."""

from __future__ import annotations

import importlib
import pkgutil

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

import cloudherd
from cloudherd.api.remote import RemoteClient
from cloudherd.errors import CloudherdError, NameTaken, StateError


def _every_error_class() -> list[type[CloudherdError]]:
    for module in pkgutil.walk_packages(cloudherd.__path__, "cloudherd."):
        if ".migrations." not in module.name and not module.name.endswith("__main__"):
            importlib.import_module(module.name)
    found: list[type[CloudherdError]] = []
    todo = [CloudherdError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo += cls.__subclasses__()
    return sorted(set(found), key=lambda c: f"{c.__module__}.{c.__qualname__}")


def _raised(cls: type[CloudherdError], text: str) -> CloudherdError:
    made = cls.__new__(cls)
    Exception.__init__(made, text)
    made.remedy = None
    return made


def _client_of(error: CloudherdError) -> RemoteClient:
    from cloudherd.server.errors import install

    app = FastAPI()
    install(app)

    @app.get("/v1/fails")
    def fails() -> None:
        raise error

    client = RemoteClient("http://testserver", "chd_token")
    client._http.close()
    client._http = TestClient(app, raise_server_exceptions=False)
    return client


CLASSES = _every_error_class()


def test_the_table_knows_many_classes() -> None:
    names = {cls.__name__ for cls in CLASSES}
    assert {"NameTaken", "BusyError", "SpecError", "NotFound", "ProviderError"} <= names and len(CLASSES) > 20


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.__qualname__)
def test_every_error_survives_the_round_trip(cls: type[CloudherdError]) -> None:
    sent = _raised(cls, f"{cls.__name__} says what went wrong")
    with _client_of(sent) as client, pytest.raises(CloudherdError) as caught:
        client._call("GET", "/v1/fails")
    got = caught.value
    assert got.exit_code == sent.exit_code
    if cls is StateError or issubclass(cls, StateError):  # the server's database away: 503, try again
        assert isinstance(got, StateError) and "the server http://testserver failed" in str(got)
        return
    assert type(got).__name__ == cls.__name__ and str(got) == f"{cls.__name__} says what went wrong"


def test_a_remedy_comes_back_and_a_name_taken_exits_2() -> None:
    sent = NameTaken("an active infrastructure is named web already")
    sent.remedy = ("name", "web-2")
    with _client_of(sent) as client, pytest.raises(NameTaken) as caught:
        client._call("GET", "/v1/fails")
    assert caught.value.exit_code == 2 and caught.value.remedy == ("name", "web-2")


def test_the_statuses_say_the_kind() -> None:
    from cloudherd.errors import BusyError, NotFound, SpecError
    from cloudherd.providers.base import CapacityError
    from cloudherd.server.errors import status_of

    assert [status_of(_raised(cls, "x")) for cls in (SpecError, NotFound, NameTaken, BusyError, CapacityError,
                                                        StateError)] == [400, 404, 409, 409, 502, 503]
