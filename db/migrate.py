"""Run Alembic migrations from code (`labq up`, `labq migrate`, the compose migrate service)."""

import time
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from db.session import get_engine

MIGRATIONS = Path(__file__).parent / "migrations"


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
