"""`labq user add|ls|disable`: the people who share this labq, managed on the database directly
(like tokens). `add` prints the user's first token, once."""

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from cli.tokens import _session, cli_actor

app = typer.Typer(help="Users: add (prints a first token), list, disable.", no_args_is_help=True)
console = Console()


@app.command()
def add(
    name: Annotated[str, typer.Argument(help="the user's name, e.g. alice")],
    role: Annotated[
        str, typer.Option(help="admin (acts on everything), member (own runs) or viewer (reads)")
    ] = "member",
):
    """Add a user and print their first token (stored hashed: it is not shown again)."""
    from db import tokens, users

    try:
        with _session() as session:
            users.create(session, name, role)
            token = tokens.create(session, f"{name}-1", name)
            users.audit(session, cli_actor(), "user.add", f"user {name} ({role})")
    except ValueError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(1) from None
    typer.echo(token)
    typer.secho(
        f"user {name!r} ({role}) added with token {name}-1; send it as "
        "'Authorization: Bearer <token>' (or LABQ_TOKEN for the CLI). It is not shown again.",
        err=True,
    )


@app.command("ls")
def ls():
    """List users: role, state and live tokens."""
    from db import users

    with _session() as session:
        t = Table("name", "role", "state", "tokens", "created")
        counts = users.token_counts(session)
        for u in users.all_users(session):
            t.add_row(
                u.name,
                u.role,
                "disabled" if u.disabled else "active",
                str(counts.get(u.id, 0)),
                u.created_at.strftime("%Y-%m-%d %H:%M"),
            )
    console.print(t)


@app.command()
def disable(name: str):
    """Disable a user: every token of theirs gets 401 from the next request on (their runs stay;
    queued ones still run: cancel them as an admin if they should not)."""
    from db import users

    with _session() as session:
        done = users.disable(session, name)
        if done:
            users.audit(session, cli_actor(), "user.disable", f"user {name}")
    if not done:
        typer.secho(f"error: no active user named {name!r}", fg="red", err=True)
        raise typer.Exit(1)
    typer.echo(f"user {name!r} disabled")
