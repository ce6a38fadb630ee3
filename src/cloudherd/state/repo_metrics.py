"""Metric samples: each group's metrics as the manager's passes sampled them, kept bounded.  Mixed into
:class:`cloudherd.state.repo.Store`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from cloudherd.state.models import MetricSample, utcnow

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
