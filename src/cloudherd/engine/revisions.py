"""Revisions: each release an ``up`` applies, kept whole (the spec as written, the scripts as they were) so
that ``history`` can list them and ``rollback`` can apply an old one without anything from the disk.

A release is what the nodes run, not how many of them there are: the digest leaves the groups' counts and
bounds out, so scaling (by ``scale``, the manager, or a changed ``count``) makes no revision, and a rollback
keeps each group at the size it has now (as ``kubectl rollout undo`` keeps the replicas).  Re-applying the
latest release reuses its revision; applying an older one again (a rollback) makes a new revision that
says where it came from.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cloudherd.engine.context import Redactor
from cloudherd.errors import UsageError
from cloudherd.lifecycle import RevisionState
from cloudherd.spec import LoadedSpec
from cloudherd.spec.confine import Confinement
from cloudherd.spec.loader import load_spec_text

if TYPE_CHECKING:
    from cloudherd.state.models import Revision
    from cloudherd.state.repo import Store

_SIZES = ("count", "min", "max")


def bundle(loaded: LoadedSpec) -> dict[str, Any]:
    """Each group's scripts, teardown and boot data as read when the release was applied (before templates
    render).  A group without boot data leaves the key out, so that older releases keep their digests."""

    def one(name: str) -> dict[str, Any]:
        stored = loaded.stored(name)
        return stored if stored["boot"] else {k: v for k, v in stored.items() if k != "boot"}

    return {"groups": {name: one(name) for name in loaded.spec.groups}}


def release_digest(loaded: LoadedSpec) -> str:
    """The digest of what the nodes run: the spec with sizes left out, and the scripts (secrets masked, so a
    digest says nothing of them; a changed secret alone is no new release)."""
    spec = loaded.spec.model_dump(mode="json")
    for group in (spec.get("groups") or {}).values():
        for key in (*_SIZES, "update"):
            group.pop(key, None)
        for key in ("variables", "metrics", "hooks", "warm_pool"):
            if not group.get(key):
                group.pop(key, None)  # unset: as before groups had them (the same digest as then)
    text = json.dumps({"spec": spec, "bundle": bundle(loaded)}, sort_keys=True, default=str)
    return hashlib.sha256(Redactor(set(loaded.secrets))(text).encode()).hexdigest()


def group_digest(loaded: LoadedSpec, group_name: str) -> str:
    """The digest of one group's release, which each of its nodes records (``nodes.release``) when it is made
    or deployed: a rolling update finds the nodes still on an older one by it.  Sizes and the update strategy
    are left out (neither changes what a node runs), and so are the metrics the manager samples and the lifecycle
    hooks (they change what the manager does around a node, not what runs on it); the variables are in (scripts
    render them)."""
    # the group's own variables are in "variables" (merged over the spec's): left out of the group, so that
    # a digest made before groups had variables stays the same
    left_out = {*_SIZES, "update", "variables", "ssh", "metrics", "hooks", "warm_pool",
                *_unset_new_keys(loaded, group_name)}
    group = loaded.group(group_name).model_dump(mode="json", exclude=left_out)
    release = {"group": group, "variables": loaded.variables_for(group_name),
               "bundle": bundle(loaded)["groups"][group_name]}
    text = json.dumps(release, sort_keys=True, default=str)
    return hashlib.sha256(Redactor(set(loaded.secrets))(text).encode()).hexdigest()[:32]


def _unset_new_keys(loaded: LoadedSpec, group_name: str) -> list[str]:
    """Keys added to groups after releases were first recorded, left out of digests while unset: nodes made
    before them keep their digests (no spurious rolling update or replacement on upgrade)."""
    group = loaded.group(group_name)
    return [key for key in ("ssh", "upload") if not getattr(group, key)]


SHAPE = ("provider", "image", "size", "user_data", "placement", "ports", "tags")  # what a machine is made as


def shape_digest(loaded: LoadedSpec, group_name: str) -> str:
    """The digest of what a group's machines are made as: a node whose shape is the group's can take a new
    release in place (its scripts re-run); one whose shape changed must be replaced."""
    shape = {*SHAPE, "ssh"} - set(_unset_new_keys(loaded, group_name))  # the login is made with the machine
    group = loaded.group(group_name).model_dump(mode="json", include=shape)
    return hashlib.sha256(json.dumps(group, sort_keys=True, default=str).encode()).hexdigest()[:32]


def begin(store: Store, infra_id: str, loaded: LoadedSpec, author: str, origin: str = "up", *,
          restart: bool = True) -> Revision:
    """The revision this apply makes: the latest one again when its release is the same, else a new one.

    ``restart``: the latest one, reused, is marked applying again (an ``up`` ends it itself); a ``submit``
    leaves an applied one as it is, since the manager's pass that applies a change settles it."""
    digest = release_digest(loaded)
    known = store.revisions(infra_id)
    if known and known[-1].digest == digest:
        if restart or known[-1].state != RevisionState.APPLIED:
            store.end_revision(known[-1].id, RevisionState.APPLYING)
            known[-1].state = RevisionState.APPLYING
        return known[-1]
    return store.add_revision(infra_id, digest=digest, spec_text=loaded.raw_text, spec_path=str(loaded.path),
                              bundle=bundle(loaded), author=author, origin=origin, state=RevisionState.APPLYING)


def pick(revisions: list[Revision], number: int | None) -> Revision:
    """Revision ``number``, or (None) the newest applied one before the latest: what a rollback goes back to."""
    if not revisions:
        raise UsageError("it has no revisions yet (they are recorded from this version on, at each up)")
    if number is not None:
        found = next((r for r in revisions if r.number == number), None)
        if found is None:
            raise UsageError(f"no revision {number} (there are {revisions[0].number} to {revisions[-1].number}; "
                             "see `cloudherd history`)")
        return found
    current = revisions[-1]
    earlier = [r for r in revisions[:-1] if r.state == RevisionState.APPLIED and r.digest != current.digest]
    if not earlier:
        raise UsageError(f"no earlier applied revision to roll back to (revision {current.number} is the first)")
    return earlier[-1]


def loaded_from(revision: Revision, counts: Mapping[str, int], environ: Mapping[str, str] | None = None, *,
                within: Confinement | None = None) -> LoadedSpec:
    """The spec of ``revision`` with its stored scripts, each group that exists now kept at its size now
    (``within``: the infrastructure's confinement, when its spec came over the network)."""
    loaded = load_spec_text(revision.spec_text, Path(revision.spec_path), environ=environ, read_scripts=False,
                            within=within)
    groups = (revision.bundle or {}).get("groups") or {}
    for name in loaded.spec.groups:
        loaded.restore(name, groups.get(name) or {})
    sized = {name: group.model_copy(update={"count": counts[name]}) if name in counts else group
             for name, group in loaded.spec.groups.items()}
    loaded.spec = loaded.spec.model_copy(update={"groups": sized})
    return loaded
