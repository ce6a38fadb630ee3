"""What every part of the Auto Scaling model (:class:`cloudherd.api.autoscaling.AutoScaling`) shares: the group
helpers it declares once here (defined by ``AutoScaling``), and writing a group's parts with the spec they make."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from cloudherd.api.autoscaling_values import ScalingGroupView
from cloudherd.state.models import LaunchConfiguration as LaunchRow
from cloudherd.state.models import ScalingGroup as GroupRow
from cloudherd.state.repo import Store


class GroupParts:
    """``store``, ``owner``, ``poke`` and the group helpers: :class:`~cloudherd.api.autoscaling.AutoScaling`'s."""

    store: Store
    owner: str
    poke: Callable[[str | None], None]

    def _group(self, name: str) -> GroupRow:  # pragma: no cover - AutoScaling's
        raise NotImplementedError

    def _view(self, row: GroupRow) -> ScalingGroupView:  # pragma: no cover - AutoScaling's
        raise NotImplementedError

    def _launch(self, name: str) -> LaunchRow:  # pragma: no cover - AutoScaling's
        raise NotImplementedError

    def _checked_spec(self, name: str, launch: LaunchRow, min_size: int, max_size: int, desired: int,
                      zones: list[str], tags: list[dict[str, Any]], policies: Mapping[str, Any] | None = None,
                      schedules: Mapping[str, Any] | None = None,
                      choices: Mapping[str, Any] | None = None) -> str:  # pragma: no cover - AutoScaling's
        raise NotImplementedError

    def _write(self, row: GroupRow, text: str, desired: int | None, **fields: Any) -> None:  # pragma: no cover
        raise NotImplementedError

    def _save_parts(self, row: GroupRow, *, policies: dict[str, Any] | None = None,
                    schedules: dict[str, Any] | None = None, choices: dict[str, Any] | None = None) -> None:
        """The group's new policies, schedules or choices (those given; the others as stored) with the spec they
        make, checked first, in one transaction."""
        view = self._view(row)
        text = self._checked_spec(row.name, self._launch(row.launch_configuration), row.min_size, row.max_size,
                                  view.desired, list(row.zones.get("list") or []), list(row.tags.get("list") or []),
                                  policies, schedules, choices)
        given = (("policies", policies), ("schedules", schedules), ("choices", choices))
        self._write(row, text, None, **{key: value for key, value in given if value is not None})
