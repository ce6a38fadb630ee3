"""Occopus' authentication file (``auth_data.yaml``), read into the environment of the process.

The file lists ``resource:`` entries, each a ``type`` (``ec2``, ``nova``…), optionally keys that pick
the resources it is for (``endpoint``, ``regionname``…: Occopus matched them against the node's
resource), and ``auth_data`` (the credentials).  cloudherd keeps credentials out of specs and out of its
database: entry *n* becomes the environment variables ``OCCOPUS_AUTH_<n>_TYPE``, ``…_<KEY>`` for each
matching key and ``…_AUTH_<NAME>`` for each credential; a converted resource names the variables its
credentials are in (``access_key_id_env: OCCOPUS_AUTH_1_AUTH_ACCESSKEY``), which the driver reads when
it starts.  So a manager or a later ``down`` in an environment with the same file set works too.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

from cloudherd.spec.compat import line_of
from cloudherd.spec.files import Where, read_text, spec_error
from cloudherd.spec.yamlsafe import plain

PREFIX = "OCCOPUS_AUTH_"
_NAME = re.compile(r"[^A-Z0-9]+")


def read(path: Path) -> dict[str, str]:
    """The environment variables of an auth-data file (``!text_import`` / ``!yaml_import`` read beside it)."""
    from cloudherd.spec.compat import imports
    from cloudherd.spec.yamlsafe import parse_yaml

    display = str(path)
    text = read_text(path, Where(display), yaml=True)
    tree = imports.resolve(parse_yaml(text, display, extra_tags=imports.IMPORT_TAGS), display, path.parent)
    data = plain(tree)
    if not isinstance(data, dict) or not isinstance(data.get("resource"), list):
        raise spec_error(display, 1, "resource", "an auth-data file lists resource: [{type, auth_data}…]")
    unknown = [k for k in data if k not in ("resource", "config_management")]
    if unknown:
        raise spec_error(display, line_of(tree, unknown[0]), unknown[0], "unknown key (an auth-data file has "
                         "resource and config_management)")
    out: dict[str, str] = {}
    for index, entry in enumerate(data["resource"], start=1):
        where = ("resource", index - 1)
        if not isinstance(entry, dict) or not entry.get("type") or not isinstance(entry.get("auth_data"), dict):
            raise spec_error(display, line_of(tree, *where), f"resource[{index - 1}]",
                             "each entry has a type and auth_data: {…}")
        for key, value in entry.items():
            if key == "auth_data":
                for name, secret in value.items():
                    out[f"{PREFIX}{index}_AUTH_{_upper(name)}"] = str(secret)
            elif isinstance(value, str | int | float):
                out[f"{PREFIX}{index}_{_upper(key)}"] = str(value)
    return out


def use(path: Path, environ: MutableMapping[str, str] | None = None) -> None:
    """Put the file's variables into ``environ`` (this process's environment by default), replacing those of
    an earlier file."""
    target = os.environ if environ is None else environ
    for name in [n for n in target if n.startswith(PREFIX)]:
        del target[name]
    target.update(read(path))


def credentials_for(resource: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The first entry for ``resource`` (its type, and every other key the entry names equal to the
    resource's): credential name (lower case) → the environment variable holding it; {} when none."""
    env = os.environ if environ is None else environ
    entries: dict[int, dict[str, str]] = {}
    for name, value in env.items():
        if name.startswith(PREFIX):
            number, _, key = name[len(PREFIX):].partition("_")
            if number.isdigit():
                entries.setdefault(int(number), {})[key] = value
    for index in sorted(entries):
        entry = entries[index]
        if entry.get("TYPE") != str(resource.get("type")):
            continue
        picks = {k: v for k, v in entry.items() if k != "TYPE" and not k.startswith("AUTH_")}
        wanted = {_upper(k): str(v) for k, v in resource.items() if isinstance(v, str | int | float)}
        if all(wanted.get(k) == v for k, v in picks.items()):
            return {k[len("AUTH_"):].lower(): f"{PREFIX}{index}_{k}" for k in entry if k.startswith("AUTH_")}
    return {}


def _upper(key: Any) -> str:
    return _NAME.sub("_", str(key).upper()).strip("_")



