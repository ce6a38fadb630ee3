"""``cloudherd notify``: webhooks that receive signed notifications of chosen events (``add``, ``list``,
``remove``), a test notification sent now (``test``), the deliveries waiting or given up (``deliveries``), and
those given up sent again (``retry``)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import typer

from cloudherd.cli.common import AS_JSON, err, guard, out, print_json

if TYPE_CHECKING:
    from cloudherd.api.notify import Notifications, WebhookInfo
    from cloudherd.api.notify_remote import RemoteNotifications

notify_app = typer.Typer(help="Webhooks: signed notifications of a fleet's events (made, retired, failed nodes, "
                              "scaling, rollouts, budget…).", no_args_is_help=True)
router = typer.Typer()
router.add_typer(notify_app, name="notify")


def _model() -> Notifications | RemoteNotifications:
    from cloudherd.api.notify_remote import notifications

    return guard(notifications)


def _routes(info: WebhookInfo) -> str:
    parts = []
    for route in info.routes:
        where = route.infrastructure or "every infrastructure"
        group = f" (Auto Scaling group {route.auto_scaling_group})" if route.auto_scaling_group else ""
        parts.append(f"{','.join(route.events)} of {where}{group}")
    return "; ".join(parts) or "nothing yet (an Auto Scaling group's PutNotificationConfiguration routes to it)"


@notify_app.command("add")
def add(
    url: str = typer.Argument(..., help="Where the notifications are POSTed (http:// or https://)."),
    infra: str | None = typer.Option(None, "--infra", help="Only this infrastructure's events (id or name; "
                                                           "default: every one of yours)."),
    events: list[str] = typer.Option([], "--events", "-e", help="Kinds, comma-separated or repeated: node.made, "
                                     "node.retired, node.failed, node.health, scale, rollout, circuit-breaker, budget, "
                                     "autostop, market, infra.up, infra.down, error, an event's own kind, or * "
                                     "(default: *)."),
    topic: str | None = typer.Option(None, "--topic", help="The SNS topic ARN the Auto Scaling API names this "
                                                           "webhook by (PutNotificationConfiguration)."),
    as_json: bool = AS_JSON,
) -> None:
    """Add a webhook; prints its id and its signing secret (shown this once: keep it in the receiver)."""
    model = _model()
    made = guard(lambda: model.add(url, infrastructure=infra, events=events, topic=topic))
    if as_json:
        print_json(made)
        return
    out.print(f"webhook {made.webhook.id}: {made.webhook.url}")
    out.print(f"  receives: {_routes(made.webhook)}")
    out.print(f"  secret:   {made.secret}")
    err.print("the secret is shown this once: verify each POST's Cloudherd-Signature with it "
              "(cloudherd.webhooks.verify)")


@notify_app.command("list")
def list_(as_json: bool = AS_JSON) -> None:
    """The webhooks, what each receives, and how their deliveries stand (pending, sent, failed)."""
    model = _model()
    found = guard(model.webhooks)
    if as_json:
        print_json(found)
        return
    if not found:
        err.print("no webhook (add one with `cloudherd notify add URL`)")
    for info in found:
        topic = f"  topic {info.topic}" if info.topic else ""
        out.print(f"{info.id}  {info.url}{topic}")
        out.print(f"  receives: {_routes(info)}")
        out.print(f"  deliveries: {info.sent} sent, {info.pending} pending, {info.failed} failed"
                  + ("  (`cloudherd notify deliveries` says why, `notify retry` sends them again)"
                     if info.failed else ""))


@notify_app.command("remove")
def remove(webhook_id: str = typer.Argument(..., help="The webhook's id (`cloudherd notify list`).")) -> None:
    """Remove a webhook, with its notifications not delivered yet."""
    model = _model()
    guard(lambda: model.remove(webhook_id))
    err.print(f"webhook {webhook_id} removed")


@notify_app.command("test")
def test(
    webhook_id: str | None = typer.Argument(None, help="The webhook's id (default: every one)."),
    timeout: float = typer.Option(10.0, "--timeout", min=0.1, help="Seconds to wait for each receiver's answer."),
    as_json: bool = AS_JSON,
) -> None:
    """Send a signed test notification now; prints what each receiver answered (exit 1 if one did not 2xx)."""
    model = _model()
    results = guard(lambda: asyncio.run(model.test(webhook_id, timeout=timeout)))
    if as_json:
        print_json(results)
    else:
        for result in results:
            said = f"HTTP {result.status}" if result.status is not None else "no answer"
            out.print(f"{result.webhook}  {result.url}: {said}" + (f" ({result.error})" if result.error else "")
                      + f"  delivery {result.delivery_id}")
    if any(r.status is None or not 200 <= r.status < 300 for r in results):
        raise typer.Exit(1)


@notify_app.command("deliveries")
def deliveries(
    webhook_id: str | None = typer.Option(None, "--webhook", help="Only this webhook's."),
    states: list[str] = typer.Option([], "--state", help="pending, sent or failed (repeatable; default: pending "
                                                         "and failed)."),
    as_json: bool = AS_JSON,
) -> None:
    """The notifications waiting to be delivered, and those given up (after their attempts or their age)."""
    model = _model()
    found = guard(lambda: model.deliveries(webhook_id=webhook_id, states=states or ("pending", "failed")))
    if as_json:
        print_json(found)
        return
    if not found:
        err.print("nothing waits and nothing was given up")
    for row in found:
        last = f"  last: {row.last_error}" if row.last_error else ""
        out.print(f"{row.delivery_id}  {row.state:<7} webhook {row.webhook}  {row.kind}  "
                  f"{row.infrastructure or '-'}  {row.attempts} attempt(s){last}")


@notify_app.command("retry")
def retry(webhook_id: str | None = typer.Argument(None, help="The webhook's id (default: every one).")) -> None:
    """Queue the given-up notifications again (after the receiver is mended): each gets its attempts afresh."""
    model = _model()
    count = guard(lambda: model.retry(webhook_id))
    err.print(f"{count} notification(s) queued again" if count else "no notification was given up")
