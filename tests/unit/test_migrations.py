"""The migrations and db/models.py describe the same schema: a database migrated to the latest
revision has nothing left for autogenerate to write (so `labq migrate new` starts clean)."""

import os

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from db.models import Base


def test_models_match_the_latest_migration(tmp_path, monkeypatch):
    monkeypatch.setenv("LABQ_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    from core.settings import get_settings
    from db import session

    for cached in (get_settings, session.get_engine, session.get_sessionmaker):
        cached.cache_clear()
    try:
        from db.migrate import upgrade

        upgrade()
        with session.get_engine().connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == []
    finally:
        session.get_engine().dispose()
        for cached in (get_settings, session.get_engine, session.get_sessionmaker):
            cached.cache_clear()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_users_migration_keeps_every_run_and_token(tmp_path, monkeypatch, backend):
    """A database from before users: its tokens become the `admin` user's (and keep working), its
    runs submitted with a token are admin's, the others the implicit local admin's, and nothing
    that refers to a copied table (SQLite's batch mode) is lost."""
    monkeypatch.setenv("LABQ_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    if backend == "postgres":
        admin_url = os.environ.get("LABQ_TEST_PG_URL")
        if not admin_url:
            pytest.skip("PostgreSQL: LABQ_TEST_PG_URL not set")
        from tests.stack import create_pg_database

        monkeypatch.setenv("DATABASE_URL", create_pg_database(admin_url))
    from alembic import command
    from sqlalchemy import text

    from core.settings import get_settings
    from db import session, tokens, users
    from db.migrate import alembic_config, upgrade

    for cached in (get_settings, session.get_engine, session.get_sessionmaker):
        cached.cache_clear()
    try:
        command.upgrade(alembic_config(), "0002")
        with session.get_engine().begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO tokens (id, name, token_hash, created_at, revoked) VALUES "
                    "(1, 'ci', :h, '2026-01-01 00:00:00', :f)"
                ),
                {"h": tokens.digest("labq_old"), "f": False},
            )
            for i, token_id in [(1, 1), (2, None)]:
                conn.execute(
                    text(
                        "INSERT INTO experiments (id, name, spec, status, token_id, created_at, "
                        "epochs_total, epochs_done, diverged, cancel_requested, attempt) VALUES "
                        "(:i, 'old', '{}', 'finished', :t, '2026-01-01 00:00:00', 1, 1, :f, :f, 1)"
                    ),
                    {"i": i, "t": token_id, "f": False},
                )
                conn.execute(
                    text("INSERT INTO epochs (experiment_id, epoch, attempt) VALUES (:i, 1, 1)"),
                    {"i": i},
                )
        upgrade()
        with session.session_scope() as s:
            actor = tokens.lookup(s, "labq_old")
            assert actor is not None and (actor.name, actor.role) == ("admin", users.ADMIN)
            rows = s.execute(text("SELECT id, owner_id FROM experiments ORDER BY id"))
            owners = {r[0]: r[1] for r in rows}
            assert owners == {1: actor.user_id, 2: None}
            # the tables SQLite copied kept everything that refers to them
            assert s.execute(text("SELECT count(*) FROM epochs")).scalar() == 2
    finally:
        session.get_engine().dispose()
        for cached in (get_settings, session.get_engine, session.get_sessionmaker):
            cached.cache_clear()
