"""Run Alembic migrations from code (`labq up`, `labq migrate`, the compose migrate service)."""

import time
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from db.session import get_engine

MIGRATIONS = Path(__file__).parent / "migrations"
INCREMENTAL = 2  # PRAGMA auto_vacuum: 0 none, 1 full, 2 incremental


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def wait_for_db(timeout: float = 60.0) -> None:
    """The distributed stack may start before PostgreSQL accepts connections."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with get_engine().connect() as conn:
                conn.execute(text("SELECT 1"))
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def upgrade() -> None:
    wait_for_db()
    command.upgrade(alembic_config(), "head")
    incremental_vacuum_on()


def incremental_vacuum_on() -> None:
    """SQLite files keep freed pages unless auto_vacuum is INCREMENTAL (db/deletion.reclaim then
    returns them). A file made before labq set it is converted once, by a VACUUM that rewrites it
    (migrations run before anything else opens the database)."""
    engine = get_engine()
    if engine.dialect.name != "sqlite":
        return
    with engine.connect() as conn:
        if conn.exec_driver_sql("PRAGMA auto_vacuum").scalar() == INCREMENTAL:
            return
        conn.commit()  # VACUUM cannot run inside a transaction
        conn.exec_driver_sql("PRAGMA auto_vacuum=INCREMENTAL")
        conn.exec_driver_sql("VACUUM")


def new_revision(message: str) -> Path:
    """Write the next numbered migration (0002_…, 0003_…) from the difference between
    db/models.py and the database, which is first brought to the latest migration."""
    upgrade()
    numbers = [int(p.name[:4]) for p in (MIGRATIONS / "versions").glob("[0-9][0-9][0-9][0-9]_*.py")]
    cfg = alembic_config()
    cfg.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    script = command.revision(
        cfg, message=message, autogenerate=True, rev_id=f"{max(numbers, default=0) + 1:04d}"
    )
    assert script is not None and not isinstance(script, list)
    return Path(script.path)
