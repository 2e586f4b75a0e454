"""Alembic environment: the URL comes from labq's settings, never from alembic.ini."""

from alembic import context
from sqlalchemy import Connection

from db.models import Base
from db.session import get_engine


def _sqlite_foreign_keys(connection: Connection, on: bool) -> None:
    """SQLite changes a table by copying it (batch mode): with foreign keys enforced, dropping
    the old copy would fail, or cascade into the rows that refer to it (an experiment's epochs).
    Off during migrations, as SQLite's own procedure says; the pragma only takes effect outside
    a transaction, hence the commits. The connection goes back to the pool with them on."""
    connection.exec_driver_sql(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")
    connection.commit()


def run_migrations_online() -> None:
    engine = get_engine()
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            _sqlite_foreign_keys(connection, False)
        try:
            context.configure(
                connection=connection,
                target_metadata=Base.metadata,
                render_as_batch=sqlite,
            )
            with context.begin_transaction():
                context.run_migrations()
                if sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    assert not broken, f"migration left rows with dangling references: {broken}"
            connection.commit()
        finally:
            if sqlite:
                connection.rollback()
                _sqlite_foreign_keys(connection, True)


run_migrations_online()
