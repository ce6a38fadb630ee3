"""Third-party warnings stay out of what cloudherd prints.

A library's deprecation notice (cryptography's of DSA each time asyncssh loads, botocore's of ``utcnow``…)
is news for cloudherd's developers, who meet it in the test suite and in ``make test-latest``.  A user can do
nothing about it, and ten lines of it on stderr hide what the command said (and break "an error is one
line").  So:

- ``import cloudherd`` ignores the warnings of the libraries cloudherd loads (:data:`LIBRARIES`), and only
  those: a program that uses the Python API keeps its own warnings and those of its other libraries;
- a process that cloudherd starts (the CLI, ``serve``, a local node's server) ignores every warning;
- ``--debug`` (or ``CLOUDHERD_DEBUG=1``) shows them all again; so does ``PYTHONWARNINGS`` (or ``-W``): when
  the person running Python asked for a warnings policy, cloudherd installs none.

Nothing here edits a library: these are entries in :data:`warnings.filters`, the interpreter's own switch.
"""

from __future__ import annotations

import sys
import warnings

# The top-level modules of every library that cloudherd and its extras install, directly or through another
# (tests/integration/cli/test_quiet.py holds this list against the installed dependency closure, so a new dependency
# that is not named here fails a test).
LIBRARIES = (
    "_cffi_backend", "alembic", "annotated_doc", "annotated_types", "anyio", "asyncssh", "boto3", "botocore",
    "certifi", "cffi", "charset_normalizer", "click", "cryptography", "dateutil", "dotenv", "fastapi", "google",
    "grpc", "grpc_status", "h11", "httpcore", "httptools", "httpx", "idna", "jinja2", "jmespath", "libcloud",
    "mako", "markdown_it", "markupsafe", "mdurl", "opentelemetry", "platformdirs", "prometheus_client", "proto",
    "psycopg", "psycopg_binary", "pyasn1", "pyasn1_modules", "pycparser", "pydantic", "pydantic_core", "pygments",
    "requests", "rich", "ruamel", "s3transfer", "shellingham", "six", "sqlalchemy", "starlette", "tenacity",
    "typer", "typing_extensions", "typing_inspection", "urllib3", "uvicorn", "uvloop",
)
# a warning is attributed to the module that called warn() at its stacklevel: a library's own submodule
_LIBRARY_MODULE = r"(?:{})(?:\.|$)".format("|".join(LIBRARIES))


def asked_for_warnings() -> bool:
    """Whether whoever runs Python chose a warnings policy (``PYTHONWARNINGS`` or ``-W``): then it stands."""
    return bool(sys.warnoptions)


def quiet_libraries() -> None:
    """Ignore the warnings attributed to cloudherd's libraries (done once, when ``cloudherd`` is imported)."""
    if not asked_for_warnings():
        warnings.filterwarnings("ignore", module=_LIBRARY_MODULE)


def quiet_all() -> None:
    """Ignore every warning: for the processes cloudherd itself starts, where no user code runs."""
    if not asked_for_warnings():
        warnings.simplefilter("ignore")


def loud() -> None:
    """Show every warning again, once per place (``--debug``): a filter in front of the ones above."""
    warnings.simplefilter("default")
