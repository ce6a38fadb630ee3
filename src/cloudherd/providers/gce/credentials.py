"""Google credentials and the project they name: a service-account or authorized-user JSON file (the
``credentials`` setting or ``GOOGLE_APPLICATION_CREDENTIALS``), a credentials object from code, anonymous (for
emulators and tests), else Application Default Credentials.  What google-auth says about a bad file is not
repeated: it may quote the file."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from cloudherd.providers.base import AuthError

SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]


def load_credentials(settings: Mapping[str, Any], path: str | None) -> Any:
    """The credentials the settings ask for (``path``: the credentials file, see :func:`credentials_path`)."""
    given = settings.get("credentials")
    if settings.get("anonymous"):
        from google.auth.credentials import AnonymousCredentials

        return AnonymousCredentials()
    if given is not None and not isinstance(given, str | os.PathLike):
        return given  # a google.auth credentials object, from code
    import google.auth
    from google.auth import exceptions as ax

    if path and not os.path.isfile(path):
        raise AuthError(f"gce: the credentials file {path} does not exist: set 'credentials' or "
                        "GOOGLE_APPLICATION_CREDENTIALS to a service-account JSON key file")
    if path:
        creds = file_credentials(path)
        if creds is not None:
            return creds
        if given:
            raise AuthError(f"gce: the credentials file {path} is neither a service-account key nor an "
                            "authorized-user file: leave 'credentials' unset to use Application Default "
                            "Credentials")
    try:
        creds, _ = google.auth.default(scopes=SCOPES)
    except ax.GoogleAuthError:
        raise AuthError("gce: no Google credentials found: set 'credentials' or GOOGLE_APPLICATION_CREDENTIALS "
                        "to a service-account JSON key, or run 'gcloud auth application-default login'") from None
    return creds


def credentials_path(settings: Mapping[str, Any]) -> str | None:
    given = settings.get("credentials")
    if given is not None and not isinstance(given, str | os.PathLike):
        return None
    path = given or os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    return os.path.expanduser(os.fspath(path)) if path else None


def file_credentials(path: str) -> Any:
    """Credentials from a service-account key or authorized-user JSON file; None for other kinds (which
    Application Default Credentials may read).  What google-auth says about a bad file is not repeated: it may
    quote the file."""
    from google.auth import exceptions as ax

    unusable = AuthError(f"gce: the credentials file {path} is not a usable Google credentials file "
                         "(expected a service-account JSON key)")
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        raise unusable from None
    kind = data.get("type") if isinstance(data, dict) else None
    try:
        if kind == "service_account":
            from google.oauth2 import service_account

            return service_account.Credentials.from_service_account_info(data, scopes=SCOPES)
        if kind == "authorized_user":
            from google.oauth2 import credentials as user_credentials

            return user_credentials.Credentials.from_authorized_user_info(data, scopes=SCOPES)
    except (ax.GoogleAuthError, ValueError, TypeError, KeyError):
        raise unusable from None
    if kind is None:
        raise unusable
    return None


def file_project(path: str | None) -> str | None:
    """The project named in a credentials file, if it can be read (its secrets are not kept)."""
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    project = data.get("project_id") or data.get("quota_project_id")
    return str(project) if project else None
