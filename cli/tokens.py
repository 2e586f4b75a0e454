"""`labq token create|ls|revoke`: API bearer tokens, managed on the database directly (so the first
token can be made before anything is exposed). A token is printed once, at creation."""

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from core.settings import Settings

app = typer.Typer(help="API tokens: create (shown once), list, revoke.", no_args_is_help=True)
console = Console()


def _session():
    from core import privacy
    from db.migrate import upgrade
    from db.session import session_scope

    privacy.private_umask()  # the database may be created here
    upgrade()
    return session_scope()


# Commands here act on the database directly, as its owner: the audit log records them as the
# local admin, from `cli`.
def cli_actor():
    import dataclasses

    from db import users

    return dataclasses.replace(users.LOCAL, source="cli")


@app.command()
def create(
    name: Annotated[str, typer.Argument(help="what the token is for, e.g. alice-laptop or ci")],
    user: Annotated[
        str | None, typer.Option(help="the user it acts for (default: the `admin` user)")
    ] = None,
):
    """Create a token and print it (it is stored hashed and cannot be shown again)."""
    from db import tokens, users

    try:
        with _session() as session:
            token = tokens.create(session, name, user)
            users.audit(session, cli_actor(), "token.create", f"token {name} of {user or 'admin'}")
    except ValueError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(1) from None
    typer.echo(token)
    typer.secho(
        f"token {name!r} created; send it as 'Authorization: Bearer <token>' "
        "(or LABQ_TOKEN for the CLI). It is not shown again.",
        err=True,
    )


@app.command("ls")
def ls():
    """List tokens (names, dates, state and active jobs; never the tokens themselves)."""
    from db import repo, tokens

    with _session() as session:
        t = Table("name", "user", "created", "state", "queued+running")
        for tok, owner in tokens.all_tokens(session):
            t.add_row(
                tok.name,
                owner.name,
                tok.created_at.strftime("%Y-%m-%d %H:%M"),
                "revoked" if tok.revoked else "active",
                str(repo.active_jobs(session, tok.id)),
            )
    console.print(t)


@app.command()
def revoke(name: str):
    """Revoke a token: requests that send it get 401 from now on."""
    from db import tokens, users

    with _session() as session:
        done = tokens.revoke(session, name)
        if done:
            users.audit(session, cli_actor(), "token.revoke", f"token {name}")
    if not done:
        typer.secho(f"error: no active token named {name!r}", fg="red", err=True)
        raise typer.Exit(1)
    typer.echo(f"token {name!r} revoked")


def refuse_open_bind(settings: Settings) -> None:
    """Exit with a clear message when asked to listen beyond loopback with no token to guard it."""
    from api.auth import is_loopback
    from db import tokens

    if is_loopback(settings.host):
        return
    with _session() as session:
        if tokens.any_active(session):
            return
    typer.secho(
        f"refusing to listen on {settings.host}: no API token exists, so anyone who can reach "
        "this address could use labq. Create one first with `labq token create NAME`, or bind "
        "to 127.0.0.1.",
        fg="red",
        err=True,
    )
    raise typer.Exit(2)
