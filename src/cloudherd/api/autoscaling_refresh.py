"""The Auto Scaling API's instance refreshes over cloudherd's rolling updates: StartInstanceRefresh,
DescribeInstanceRefreshes, CancelInstanceRefresh, RollbackInstanceRefresh.  Mixed into
:class:`cloudherd.api.autoscaling.AutoScaling`.

A refresh is a release of the group's spec that the manager rolls out (:mod:`cloudherd.engine.rollout`: new nodes
made beside the old ones, each batch health-gated, then the old ones retired).  Unless ``SkipMatching``, the release
carries the refresh's id, so every instance is behind it and replaced; with it, only the instances behind the
group's launch configuration are.  The preferences become the group's ``update:``: the batch from
``MinHealthyPercentage`` / ``MaxHealthyPercentage``, ``InstanceWarmup`` the healthy time a new node passes first,
``AutoRollback`` whether a failed batch takes the group back.  cloudherd makes the new nodes before it retires the
old, so the group never runs below its size (stricter than a ``MinHealthyPercentage`` under 100).  Checkpoints
(which AWS resumes after a delay, on its own) are refused, not ignored.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from typing import Any

from cloudherd.api.autoscaling_base import GroupParts
from cloudherd.api.autoscaling_values import GROUP, AwsError
from cloudherd.lifecycle import NodeState, RevisionState
from cloudherd.state.models import Revision
from cloudherd.state.models import ScalingGroup as GroupRow

ACTIVE = ("Pending", "InProgress", "Cancelling", "RollbackInProgress")


def _percent(prefs: Mapping[str, str | None], key: str, default: int, low: int, high: int) -> int:
    raw = prefs.get(key)
    if raw is None or raw == "":
        return default
    if not raw.isascii() or not raw.isdigit() or not low <= int(raw) <= high:
        raise AwsError("ValidationError", f"Preferences.{key} {raw!r}: a whole number from {low} to {high}")
    return int(raw)


def refresh_update(prefs: Mapping[str, str | None], desired: int) -> dict[str, Any]:
    """The group's ``update:`` for a refresh with these preferences (``Preferences.X`` fields, as given)."""
    if any(k.startswith("CheckpointPercentages") or k == "CheckpointDelay" for k in prefs if prefs[k]):
        raise AwsError("ValidationError", "Preferences.CheckpointPercentages: checkpoints are not served here "
                                          "(a rollout pauses with `pause_after` in a spec instead)")
    low = _percent(prefs, "MinHealthyPercentage", 90, 0, 100)
    high = _percent(prefs, "MaxHealthyPercentage", 100, 100, 200)
    room = (high - 100) if high > 100 else (100 - low)
    batch = max(1, math.floor(max(desired, 1) * room / 100))
    update: dict[str, Any] = {"strategy": "rolling", "max_surge": batch,
                              "rollback": (prefs.get("AutoRollback") or "false").lower() == "true"}
    warmup = prefs.get("InstanceWarmup")
    if warmup:
        if not warmup.isascii() or not warmup.isdigit():
            raise AwsError("ValidationError", f"Preferences.InstanceWarmup {warmup!r}: whole seconds")
        update["min_healthy_seconds"] = f"{int(warmup)}s"
    return update


class RefreshActions(GroupParts):
    """Instance refreshes: a release the manager rolls out, followed, cancelled or rolled back."""

    def start_refresh(self, group: str, prefs: Mapping[str, str | None]) -> str:
        row = self._group(group)
        if self._active(row) is not None:
            raise AwsError("InstanceRefreshInProgress", f"An Instance Refresh is already in progress and blocks the "
                                                        f"execution of this Instance Refresh for group {group}.")
        view = self._view(row)
        refresh_id = str(uuid.uuid4())
        skip = (prefs.get("SkipMatching") or "false").lower() == "true"
        choices = {**(row.choices or {}), "update": refresh_update(prefs, view.desired)}
        if not skip:
            choices["refresh_marker"] = refresh_id
        # the spec first, then its release: a pass between sees no release to roll, never a release of the old spec
        self._save_parts(row, choices=choices)
        revision = self._begin(row, f"instance refresh {refresh_id}")
        self._done_if_none_behind(row, revision)
        before = {k: (row.choices or {}).get(k) for k in ("update", "refresh_marker")}  # what a rollback restores
        refreshes = [*((row.choices or {}).get("refreshes") or []),
                     {"id": refresh_id, "revision": revision.number, "preferences": dict(prefs), "before": before}]
        self._save_parts(row, choices={**choices, "refreshes": refreshes[-50:]})
        self.poke(row.infrastructure_id)
        return refresh_id

    def refreshes(self, group: str, ids: list[str]) -> list[dict[str, Any]]:
        row = self._group(group)
        known = {r.number: r for r in self.store.revisions(row.infrastructure_id)}
        found = []
        for refresh in reversed((row.choices or {}).get("refreshes") or []):
            if ids and refresh["id"] not in ids:
                continue
            revision = known.get(refresh["revision"])
            status, reason = self._status(row, refresh, revision, known)
            found.append({**refresh, "status": status, "reason": reason, "group": row.name,
                          "started": revision.created_at if revision else None,
                          "ended": revision.ended_at if revision and status not in ACTIVE else None,
                          "percent": self._percent_done(row, revision) if revision else 0})
        return found

    def cancel_refresh(self, group: str) -> str:
        row = self._group(group)
        active = self._active(row)
        if active is None:
            raise AwsError("ActiveInstanceRefreshNotFound", f"No in progress or pending Instance Refresh found for "
                                                            f"Auto Scaling group {group}")
        refresh, revision = active
        self.store.end_revision(revision.id, RevisionState.ABORTED, f"instance refresh {refresh['id']} cancelled")
        self.store.add_event(row.infrastructure_id, "rollout", f"instance refresh {refresh['id']} cancelled "
                                                               "(CancelInstanceRefresh): the replaced instances stay")
        return str(refresh["id"])

    def rollback_refresh(self, group: str) -> str:
        """The group back at the release before the refresh (its spec as applied then), rolled out as the refresh
        was; the refresh ends as rolled back."""
        from cloudherd.engine import revisions

        row = self._group(group)
        active = self._active(row)
        if active is None:
            raise AwsError("ActiveInstanceRefreshNotFound", f"No in progress or pending Instance Refresh found for "
                                                            f"Auto Scaling group {group}")
        refresh, revision = active
        before = [r for r in self.store.revisions(row.infrastructure_id)
                  if r.number < revision.number and r.state == RevisionState.APPLIED]
        if not before:
            raise AwsError("IrreversibleInstanceRefresh", "No earlier release of the group to roll back to")
        self.store.end_revision(revision.id, RevisionState.ABORTED, f"instance refresh {refresh['id']} rolled back")
        infra = self.store.infrastructure(row.infrastructure_id)
        back = revisions.loaded_from(before[-1], {g.name: g.count for g in infra.groups})
        restored = {k: v for k, v in (row.choices or {}).items() if k not in ("update", "refresh_marker")}
        restored.update({k: v for k, v in (refresh.get("before") or {}).items() if v is not None})
        self._write(row, back.raw_text, None, choices=restored)
        undo = revisions.begin(self.store, row.infrastructure_id, back, self.owner, f"rollback of instance refresh "
                                                                                    f"{refresh['id']}")
        self._done_if_none_behind(row, undo)
        self.poke(row.infrastructure_id)
        return str(refresh["id"])

    # -- helpers ------------------------------------------------------------------------------------

    def _begin(self, row: GroupRow, origin: str) -> Revision:
        from cloudherd.engine import revisions
        from cloudherd.engine.context import snapshot

        infra = self.store.infrastructure(row.infrastructure_id)
        return revisions.begin(self.store, infra.id, snapshot(infra), self.owner, origin)

    def _active(self, row: GroupRow) -> tuple[dict[str, Any], Revision] | None:
        listed = (row.choices or {}).get("refreshes") or []
        if not listed:
            return None
        known = {r.number: r for r in self.store.revisions(row.infrastructure_id)}
        revision = known.get(listed[-1]["revision"])
        if revision is None or self._status(row, listed[-1], revision, known)[0] not in ACTIVE:
            return None
        return listed[-1], revision

    @staticmethod
    def _status(row: GroupRow, refresh: Mapping[str, Any], revision: Revision | None,
                known: Mapping[int, Revision]) -> tuple[str, str | None]:
        if revision is None:
            return "Failed", "its release is no longer recorded"
        later = [r for n, r in sorted(known.items()) if n > revision.number]
        if revision.state in (RevisionState.APPLYING, RevisionState.PAUSED):
            return "InProgress", revision.reason
        if revision.state == RevisionState.APPLIED:
            return "Successful", None
        if revision.state == RevisionState.FAILED:
            return "Failed", revision.reason
        rollback = next((r for r in later if r.origin.startswith(("rollback", "rollback of instance refresh"))), None)
        if rollback is None:
            return "Cancelled", revision.reason
        if rollback.state in (RevisionState.APPLYING, RevisionState.PAUSED):
            return "RollbackInProgress", revision.reason
        return ("RollbackSuccessful" if rollback.state == RevisionState.APPLIED else "RollbackFailed"), revision.reason

    def _done_if_none_behind(self, row: GroupRow, revision: Revision) -> None:
        """A release no instance is behind (SkipMatching with nothing to replace, a rollback before any was) is
        applied as it is: the manager rolls out only where nodes are behind."""
        if self._percent_done(row, revision) == 100:
            self.store.end_revision(revision.id, RevisionState.APPLIED)

    def _percent_done(self, row: GroupRow, revision: Revision) -> int:
        from cloudherd.engine import revisions
        from cloudherd.engine.revisions import group_digest

        infra = self.store.infrastructure(row.infrastructure_id)
        loaded = revisions.loaded_from(revision, {g.name: g.count for g in infra.groups})
        digest = group_digest(loaded, GROUP)
        live = [n for n in infra.nodes if n.state in (NodeState.READY, NodeState.UNHEALTHY) and not n.warm]
        return 100 if not live else round(100 * sum(n.release == digest for n in live) / len(live))
