"""`labq gc --older-than 30d [--dry-run] [--owner NAME]`: delete what finished long ago and give
the space back. It acts on the database directly, as its owner (like `labq user add`), so only
whoever runs labq's processes can run it; the audit log records each deletion from `cli`."""

import re
from datetime import timedelta
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from cli.tokens import _session, cli_actor

console = Console()
AGE = re.compile(r"^([0-9]{1,6})([dhm])$")
UNITS = {"d": "days", "h": "hours", "m": "minutes"}


def parse_age(text: str) -> timedelta:
    """'30d', '12h' or '90m'."""
    m = AGE.match(text.strip())
    if m is None:
        raise typer.BadParameter(f"{text!r}: a number and d, h or m (30d, 12h, 90m)")
    return timedelta(**{UNITS[m[2]]: int(m[1])})


def gc(
    older_than: Annotated[
        str, typer.Option(help="delete what finished longer ago than this: 30d, 12h, 90m")
    ],
    dry_run: Annotated[bool, typer.Option(help="list what would go; delete nothing")] = False,
    owner: Annotated[str | None, typer.Option(help="only this user's runs")] = None,
):
    """Delete runs, sweeps and searches whose every run finished before --older-than (nothing
    queued or training is touched; a sweep or search goes whole), then reclaim the space."""
    from db import deletion, users
    from db.models import utcnow
    from db.session import get_engine, session_scope

    age = parse_age(older_than)
    actor = cli_actor()
    with _session() as session:
        owner_id = None
        if owner is not None:
            user = users.by_name(session, owner)
            if user is None:
                typer.secho(f"error: no user named {owner!r}", fg="red", err=True)
                raise typer.Exit(1)
            owner_id = user.id
        units = deletion.finished_before(session, utcnow() - age, owner_id)
        names = users.names(session, {u.owner_id for u in units})
    t = Table("what", "id", "name", "owner", "runs", "finished")
    for u in units:
        t.add_row(
            u.kind, str(u.id), u.name, names[u.owner_id], str(u.runs), f"{u.finished_at:%F %R}"
        )
    console.print(t)
    if dry_run:
        console.print(f"would delete {len(units)} (dry run: nothing deleted)")
        return
    total = deletion.Removed()
    for u in units:  # one transaction each: a long gc never holds the database for long
        with session_scope() as session:
            total.add(deletion.DELETERS[u.kind](session, u.id))
            users.audit(session, actor, f"{u.kind}.delete", f"{u.kind} {u.id} (gc {older_than})")
    deletion.reclaim(get_engine(), vacuum_postgres=True)
    console.print(
        f"deleted {len(units)}: {len(total.experiments)} run(s), {total.epochs} epoch rows, "
        f"{total.artifacts} artifacts ({total.artifact_bytes / 1e6:.1f} MB)"
    )
