"""A small filesystem to fill: a size-limited tmpfs, which needs root (CI runs as root; the tests
that use it skip, saying why, elsewhere), and a PostgreSQL database placed on one."""

import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest


@contextmanager
def small_fs(path: Path, size: str) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a size-limited tmpfs needs root (CI runs as root)")
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=False)


def fill(path: Path) -> Path:
    """Write zeros to `path`/filler until the filesystem refuses; returns the filler."""
    filler = path / "filler"
    block = b"\0" * 65536
    with open(filler, "wb", buffering=0) as f, suppress(OSError):
        while True:
            f.write(block)
    with open(filler, "ab", buffering=0) as f, suppress(OSError):
        while True:  # the last partial blocks
            f.write(b"\0" * 512)
    return filler


@contextmanager
def pg_database_on(admin_url: str, location: Path) -> Iterator[str]:
    """A fresh PostgreSQL database whose tablespace is `location` (owned by the server's user,
    which the server's data directory tells, so the server must run on this host)."""
    import psycopg

    plain = admin_url.replace("postgresql+psycopg://", "postgresql://")
    tag = uuid.uuid4().hex[:10]
    name, space = f"labq_{tag}", f"labq_small_{tag}"
    with psycopg.connect(plain, autocommit=True) as conn:
        data_dir = conn.execute("SHOW data_directory").fetchone()[0]
        try:
            os.chown(location, os.stat(data_dir).st_uid, -1)
        except OSError as exc:
            pytest.skip(f"PostgreSQL's data directory is not on this host ({exc})")
        conn.execute(f"CREATE TABLESPACE {space} LOCATION '{location}'")
        conn.execute(f'CREATE DATABASE "{name}" TABLESPACE {space}')
    try:
        yield admin_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f"DROP TABLESPACE IF EXISTS {space}")
