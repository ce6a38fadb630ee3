"""``cloudherd serve``, ``token`` and ``user``: the REST service and who may use it."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from cloudherd.cli.common import AS_JSON, LOG_FORMAT, err, guard, local_herd, out, print_json

token_app = typer.Typer(help="API tokens for `cloudherd serve` (bearer tokens, AWS-style access keys).",
                        no_args_is_help=True)
user_app = typer.Typer(help="Users of `cloudherd serve`: each sees only their own infrastructures.",
                       no_args_is_help=True)
router = typer.Typer()
router.add_typer(token_app, name="token")
router.add_typer(user_app, name="user")


@router.command()
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(5000, "--port", "-p", min=1, max=65535, help="Port to listen on."),
    config: Path | None = typer.Option(None, "--config", help="Server file: the clouds it offers (`providers:`)."),
    tls_cert: Path | None = typer.Option(None, "--tls-cert", help="HTTPS: the certificate (PEM, chain first)."),
    tls_key: Path | None = typer.Option(None, "--tls-key", help="HTTPS: its private key (PEM)."),
    tls_self_signed: bool = typer.Option(False, "--tls-self-signed",
                                         help="HTTPS with a certificate made once and kept in the data folder "
                                              "(its fingerprint is printed at start)."),
    log_format: str = LOG_FORMAT,
) -> None:
    """Serve the REST API (native /v1, Occopus' /infrastructures/, AWS Auto Scaling at /autoscaling) and keep
    every attached infrastructure alive.  SIGTERM or Ctrl-C: the current passes finish, nothing is torn down."""
    def start() -> None:
        import logging
        import sys

        from cloudherd.api.metrics_view import open_warning
        from cloudherd.observe import logs
        from cloudherd.server.config import load_config
        from cloudherd.server.tls import configured, plain_warning

        settings = load_config(config)
        tls = configured(tls_cert, tls_key, tls_self_signed, host)
        try:
            import uvicorn

            from cloudherd.server.app import create_app
        except ImportError as exc:
            from cloudherd.errors import UsageError

            raise UsageError(f"the server needs its extra ({exc.name} is missing): "
                             "pip install 'cloudherd[server]'") from None
        offered = ", ".join(f"{name} ({p.get('type')})" for name, p in settings.providers.items())
        scheme = "https" if tls else "http"
        json_logs = logs.use(log_format, sys.stderr, server=True) is not None
        said = [(logging.INFO, f"cloudherd serve on {scheme}://{host}:{port} — clouds: {offered}; docs at /docs")]
        if tls is not None:
            said.append((logging.INFO, f"TLS certificate {tls.cert} — SHA-256 {tls.fingerprint}"))
        for warning in (plain_warning(host, tls), settings.metrics_listen and open_warning(settings.metrics_listen)):
            if warning:
                said.append((logging.WARNING, warning))
        for level, line in said:
            if json_logs:
                logging.getLogger("cloudherd.server").log(level, line)
            else:  # as written: a fingerprint's ":AB:" is an emoji code to Rich, a path's "[x]" markup
                err.print(line, style="yellow" if level == logging.WARNING else None, highlight=False,
                          markup=False, emoji=False)
        # json: uvicorn's records (its requests too) through the same lines, not its own configuration
        uvicorn.run(create_app(settings), host=host, port=port, log_level="info" if json_logs else "warning",
                    access_log=json_logs, log_config=None if json_logs else uvicorn.config.LOGGING_CONFIG,
                    timeout_graceful_shutdown=60, ssl_certfile=str(tls.cert) if tls else None,
                    ssl_keyfile=str(tls.key) if tls else None)

    guard(start)


@token_app.command("create")
def token_create(
    name: str | None = typer.Option(None, "--name", help="A label to know it by (default: api, or aws)."),
    user: str | None = typer.Option(None, "--user", help="Whose token (default: you)."),
    aws: bool = typer.Option(False, "--aws", help="An AWS-style access key id and secret, for boto3 and SigV4."),
    as_json: bool = AS_JSON,
) -> None:
    """Make a token; its secret is shown this once (only a hash, or for --aws a sealed copy, is kept)."""
    issued = guard(lambda: local_herd("token").create_token(user=user, name=name, aws=aws))
    if as_json:
        import json
        import sys

        payload = ({"access_key_id": issued.access_key_id, "secret_access_key": issued.secret_access_key}
                   if aws else {"token": issued.token})
        sys.stdout.write(json.dumps({**payload, "id": issued.id, "user": issued.user}) + "\n")
        return
    if aws:
        out.print(f"access key id      {issued.access_key_id}")
        out.print(f"secret access key  {issued.secret_access_key}")
    else:
        out.print(issued.token or "")
    err.print(f"token {issued.id} ({issued.name}) for {issued.user}: keep it safe, it is not shown again")


@token_app.command("ls")
def token_ls(user: str | None = typer.Option(None, "--user", help="Only this user's."),
             as_json: bool = AS_JSON) -> None:
    """Tokens (never their secrets)."""
    rows = guard(lambda: local_herd("token").tokens(user=user))
    if as_json:
        print_json(rows)
        return
    table = Table(box=None, pad_edge=False)
    for column in ("id", "name", "user", "kind", "key", "created", "last used", "revoked"):
        table.add_column(column)
    for t in rows:
        table.add_row(t.id, t.name, t.user, t.kind, t.key_id, f"{t.created_at:%Y-%m-%d %H:%M}",
                      f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "-",
                      Text(f"{t.revoked_at:%Y-%m-%d %H:%M}", style="red") if t.revoked_at else "-")
    out.print(table)


@token_app.command("revoke")
def token_revoke(ref: str = typer.Argument(..., help="The token's id, key id or name.")) -> None:
    """Revoke a token: the server refuses it from its next request on."""
    row = guard(lambda: local_herd("token").revoke_token(ref))
    out.print(f"revoked {row.id} ({row.name}, {row.user})")


@user_app.command("add")
def user_add(name: str = typer.Argument(..., help="The new user's name."), as_json: bool = AS_JSON) -> None:
    """Add a user (then give them a token: `cloudherd token create --user NAME`)."""
    row = guard(lambda: local_herd("user").add_user(name))
    if as_json:
        print_json(row)
    else:
        out.print(f"user {row.name} ({row.id}); token: cloudherd token create --user {row.name}")


@user_app.command("ls")
def user_ls(as_json: bool = AS_JSON) -> None:
    """Users."""
    rows = guard(lambda: local_herd("user").users())
    if as_json:
        print_json(rows)
        return
    for row in rows:
        out.print(f"{row.name}  {row.id}  {row.created_at:%Y-%m-%d %H:%M}")


@router.command()
def login(
    url: str = typer.Argument(..., help="The server, e.g. http://127.0.0.1:5000"),
    token: str | None = typer.Option(None, "--token", help="An API token (default: asked for, not echoed)."),
) -> None:
    """Drive a shared `cloudherd serve` from this CLI: the same commands, over its REST routes."""
    def work() -> None:
        import httpx

        from cloudherd.api.login import save_login
        from cloudherd.errors import UsageError

        secret = token or typer.prompt("token", hide_input=True)
        try:
            answer = httpx.get(f"{url.rstrip('/')}/v1/infrastructures", timeout=15,
                               headers={"Authorization": f"Bearer {secret}"})
        except httpx.HTTPError as exc:
            raise UsageError(f"cannot reach {url}: {exc}") from None
        if answer.status_code != 200:
            raise UsageError(f"{url} answered {answer.status_code}: {answer.text[:200]}")
        path = save_login(url, secret)
        out.print(f"logged in to {url} (saved in {path}); `cloudherd logout` to use the local state again")

    guard(work)


@router.command()
def logout() -> None:
    """Use the local state again (forget the server `login` saved)."""
    from cloudherd.api.login import login_file

    path = login_file()
    path.unlink(missing_ok=True)
    out.print("logged out: commands use the local state")
