"""The state the network faces add: users and their tokens, AWS-style launch configurations and scaling
groups, and jobs.  Mixed into :class:`cloudherd.state.repo.Store`; short transactions, detached rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from cloudherd.errors import UsageError
from cloudherd.state.models import (
    ApiToken,
    Infrastructure,
    Job,
    LaunchConfiguration,
    ScaleRequest,
    ScalingGroup,
    User,
    utcnow,
)


class ServerState:
    """Methods over the server's tables; ``session`` and ``reading`` come from the Store they are mixed into."""

    def session(self) -> Session:  # pragma: no cover - the Store's
        raise NotImplementedError

    def reading(self) -> Session:  # pragma: no cover - the Store's
        raise NotImplementedError

    # -- users and tokens -------------------------------------------------------------------------------

    def add_user(self, name: str) -> User:
        """A user who holds no SSH key of their own: the server logs in to nodes with its key."""
        try:
            with self.session() as s, s.begin():
                user = User(name=name, public_key="", private_key_path="")
                s.add(user)
                s.flush()
                return user
        except IntegrityError:
            raise UsageError(f"a user named '{name}' exists already") from None

    def users(self) -> list[User]:
        with self.reading() as s:
            return list(s.scalars(select(User).order_by(User.created_at)))

    def user_by_id(self, user_id: str) -> User | None:
        with self.reading() as s:
            return s.get(User, user_id)

    def add_token(self, **fields: Any) -> ApiToken:
        with self.session() as s, s.begin():
            token = ApiToken(**fields)
            s.add(token)
            s.flush()
            return token

    def token_by_key(self, key_id: str) -> ApiToken | None:
        with self.reading() as s:
            return s.scalar(select(ApiToken).where(ApiToken.key_id == key_id))

    def token_and_user(self, key_id: str) -> tuple[ApiToken, User] | None:
        with self.reading() as s:
            found = s.execute(select(ApiToken, User).join(User, User.id == ApiToken.user_id)
                              .where(ApiToken.key_id == key_id)).first()
            return (found[0], found[1]) if found is not None else None

    def tokens(self, user_id: str | None = None) -> list[ApiToken]:
        with self.reading() as s:
            query = select(ApiToken).order_by(ApiToken.created_at)
            if user_id is not None:
                query = query.where(ApiToken.user_id == user_id)
            return list(s.scalars(query))

    def revoke_token(self, ref: str) -> ApiToken:
        """Revoke by id, key id or name (a name shared by several tokens is ambiguous)."""
        with self.session() as s, s.begin():
            found = list(s.scalars(select(ApiToken).where(
                or_(ApiToken.id == ref, ApiToken.key_id == ref, ApiToken.name == ref),
                ApiToken.revoked_at.is_(None))))
            if not found:
                raise UsageError(f"no live token '{ref}' (see `cloudherd token ls`)")
            if len(found) > 1:
                raise UsageError(f"'{ref}' names {len(found)} tokens: give its id (see `cloudherd token ls`)")
            found[0].revoked_at = utcnow()
            return found[0]

    def touch_token(self, token_id: str) -> None:
        with self.session() as s, s.begin():
            s.execute(update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=utcnow()))

    # -- launch configurations and scaling groups ------------------------------------------------------

    def add_launch_configuration(self, **fields: Any) -> LaunchConfiguration | None:
        """None when the owner has one of that name already."""
        try:
            with self.session() as s, s.begin():
                row = LaunchConfiguration(**fields)
                s.add(row)
                s.flush()
                return row
        except IntegrityError:
            return None

    def launch_configurations(self, owner_id: str, names: Sequence[str] = ()) -> list[LaunchConfiguration]:
        with self.reading() as s:
            query = select(LaunchConfiguration).where(LaunchConfiguration.owner_id == owner_id)
            if names:
                query = query.where(LaunchConfiguration.name.in_(list(names)))
            return list(s.scalars(query.order_by(LaunchConfiguration.name)))

    def template_entries(self, owner_id: str, template: str) -> list[LaunchConfiguration]:
        with self.reading() as s:
            return list(s.scalars(select(LaunchConfiguration).where(
                LaunchConfiguration.owner_id == owner_id, LaunchConfiguration.template == template)
                .order_by(LaunchConfiguration.id)))

    def delete_launch_configuration(self, owner_id: str, name: str) -> bool:
        with self.session() as s, s.begin():
            result = s.execute(delete(LaunchConfiguration).where(
                LaunchConfiguration.owner_id == owner_id, LaunchConfiguration.name == name))
            return bool(getattr(result, "rowcount", 0))

    def add_scaling_group(self, **fields: Any) -> ScalingGroup | None:
        try:
            with self.session() as s, s.begin():
                row = ScalingGroup(**fields)
                s.add(row)
                s.flush()
                return row
        except IntegrityError:
            return None

    def scaling_groups(self, owner_id: str, names: Sequence[str] = ()) -> list[ScalingGroup]:
        with self.reading() as s:
            query = select(ScalingGroup).where(ScalingGroup.owner_id == owner_id)
            if names:
                query = query.where(ScalingGroup.name.in_(list(names)))
            return list(s.scalars(query.order_by(ScalingGroup.name)))

    def infrastructures_with_parts(self, ids: Sequence[str]) -> dict[str, Infrastructure]:
        """Several infrastructures with their groups and nodes, in three queries (not three per one)."""
        if not ids:
            return {}
        with self.reading() as s:
            rows = s.scalars(select(Infrastructure).where(Infrastructure.id.in_(list(ids))).options(
                selectinload(Infrastructure.groups), selectinload(Infrastructure.nodes)))
            return {r.id: r for r in rows}

    def pending_scale_requests_of(self, ids: Sequence[str]) -> dict[str, list[ScaleRequest]]:
        if not ids:
            return {}
        with self.reading() as s:
            found: dict[str, list[ScaleRequest]] = {}
            for row in s.scalars(select(ScaleRequest).where(ScaleRequest.infrastructure_id.in_(list(ids)),
                                                            ScaleRequest.consumed_at.is_(None))
                                 .order_by(ScaleRequest.id)):
                found.setdefault(row.infrastructure_id, []).append(row)
            return found

    def update_scaling_group(self, group_id: str, **fields: Any) -> None:
        with self.session() as s, s.begin():
            s.execute(update(ScalingGroup).where(ScalingGroup.id == group_id).values(**fields))

    def delete_scaling_group(self, group_id: str) -> None:
        with self.session() as s, s.begin():
            s.execute(delete(ScalingGroup).where(ScalingGroup.id == group_id))

    # -- jobs -----------------------------------------------------------------------------------------

    def add_job(self, **fields: Any) -> Job:
        with self.session() as s, s.begin():
            job = Job(**fields)
            s.add(job)
            s.flush()
            return job

    def add_job_unless_running(self, **fields: Any) -> Job | None:
        """A job of ``kind`` for ``infrastructure_id``, unless one is running for it already (None then): one
        transaction, so that a second request in the same moment does not start the same work twice."""
        with self.session() as s, s.begin():
            running = s.scalars(select(Job.id).where(Job.infrastructure_id == fields["infrastructure_id"],
                                                     Job.kind == fields["kind"], Job.state == "running")).first()
            if running is not None:
                return None
            job = Job(**fields)
            s.add(job)
            s.flush()
            return job

    def job(self, job_id: str) -> Job | None:
        with self.reading() as s:
            return s.get(Job, job_id)

    def finish_job(self, job_id: str, state: str, result: dict[str, Any] | None = None,
                   error: str | None = None) -> None:
        with self.session() as s, s.begin():
            s.execute(update(Job).where(Job.id == job_id).values(
                state=state, result=result or {}, error=error, ended_at=utcnow()))

    def interrupt_running_jobs(self) -> int:
        """Jobs a stopped server left running: they will not end by themselves, so they are said to be cut."""
        with self.session() as s, s.begin():
            result = s.execute(update(Job).where(Job.state == "running").values(
                state="interrupted", error="the server stopped while this job ran", ended_at=utcnow()))
            return int(getattr(result, "rowcount", 0) or 0)
