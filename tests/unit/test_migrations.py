"""The migrations and db/models.py describe the same schema: a database migrated to the latest
revision has nothing left for autogenerate to write (so `labq migrate new` starts clean)."""

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
