"""Metric samples (each group's metrics as the manager's passes sampled them, kept bounded) and scheduled actions'
firings.  Mixed into :class:`cloudherd.state.repo.Store`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from cloudherd.state.models import MetricSample, Revision, ScheduleFiring, utcnow
from cloudherd.times import as_utc

KEEP_SAMPLES = 360  # per group and metric: an hour of 10-second passes


class MetricState:
    """``session`` and ``reading`` come from the Store."""

    def session(self) -> Session:  # pragma: no cover - the Store's
        raise NotImplementedError

    def reading(self) -> Session:  # pragma: no cover - the Store's
        raise NotImplementedError

    def add_samples(self, infra_id: str, samples: Sequence[tuple[str, str, float, int]], *,
                    at: datetime | None = None, keep: int = KEEP_SAMPLES) -> None:
        """(group, metric, value, nodes) of one pass, in one transaction; each series cut to its newest ``keep``."""
        if not samples:
            return
        when = at or utcnow()
        with self.session() as s, s.begin():
            s.add_all(MetricSample(infrastructure_id=infra_id, group_name=group, metric=metric, value=value,
                                   nodes=nodes, at=when) for group, metric, value, nodes in samples)
            s.flush()
            for group, metric in {(g, m) for g, m, _, _ in samples}:
                kept = select(MetricSample.id).where(
                    MetricSample.infrastructure_id == infra_id, MetricSample.group_name == group,
                    MetricSample.metric == metric).order_by(MetricSample.id.desc()).limit(keep)
                s.execute(delete(MetricSample).where(
                    MetricSample.infrastructure_id == infra_id, MetricSample.group_name == group,
                    MetricSample.metric == metric, MetricSample.id.not_in(kept.scalar_subquery())))

    def samples(self, infra_id: str, group: str | None = None, metric: str | None = None, *,
                limit: int = KEEP_SAMPLES) -> list[MetricSample]:
        """Newest last: the last ``limit`` of each series asked for."""
        query = select(MetricSample).where(MetricSample.infrastructure_id == infra_id)
        if group is not None:
            query = query.where(MetricSample.group_name == group)
        if metric is not None:
            query = query.where(MetricSample.metric == metric)
        with self.reading() as s:
            rows = list(s.scalars(query.order_by(MetricSample.id.desc()).limit(limit)))
        return rows[::-1]

    def latest_samples(self, infra_id: str) -> dict[str, dict[str, float]]:
        """Each group's latest value of each metric: ``{group: {metric: value}}``."""
        newest = select(func.max(MetricSample.id)).where(MetricSample.infrastructure_id == infra_id) \
            .group_by(MetricSample.group_name, MetricSample.metric)
        latest: dict[str, dict[str, float]] = {}
        with self.reading() as s:
            for row in s.scalars(select(MetricSample).where(MetricSample.id.in_(newest.scalar_subquery()))):
                latest.setdefault(row.group_name, {})[row.metric] = row.value
        return latest

    # -- scheduled actions --------------------------------------------------------------------------

    def add_firing(self, infra_id: str, group: str, schedule: str, occurrence: datetime, *, min: int | None,
                   max: int | None, desired: int | None) -> None:
        with self.session() as s, s.begin():
            s.add(ScheduleFiring(infrastructure_id=infra_id, group_name=group, schedule=schedule,
                                 occurrence=occurrence, min=min, max=max, desired=desired))

    def last_firings(self, infra_id: str) -> dict[tuple[str, str], datetime]:
        """(group, schedule) -> the latest occurrence fired."""
        with self.reading() as s:
            rows = s.execute(select(ScheduleFiring.group_name, ScheduleFiring.schedule,
                                    func.max(ScheduleFiring.occurrence))
                             .where(ScheduleFiring.infrastructure_id == infra_id)
                             .group_by(ScheduleFiring.group_name, ScheduleFiring.schedule))
            return {(group, schedule): as_utc(at) for group, schedule, at in rows}

    def scheduled_bounds(self, infra_id: str) -> dict[str, tuple[int | None, int | None]]:
        """Each group's (min, max) a scheduled action set since the infrastructure's latest release (an ``up``
        writes the spec's bounds again); a None: the spec's."""
        with self.reading() as s:
            since = s.scalar(select(func.max(Revision.created_at)).where(Revision.infrastructure_id == infra_id))
            query = select(ScheduleFiring).where(ScheduleFiring.infrastructure_id == infra_id,
                                                 (ScheduleFiring.min.is_not(None)) | (ScheduleFiring.max.is_not(None)))
            if since is not None:
                query = query.where(ScheduleFiring.at > since)
            rows = list(s.scalars(query.order_by(ScheduleFiring.id)))
        bounds: dict[str, tuple[int | None, int | None]] = {}
        for row in rows:
            low, high = bounds.get(row.group_name, (None, None))
            bounds[row.group_name] = (row.min if row.min is not None else low, row.max if row.max is not None else high)
        return bounds
