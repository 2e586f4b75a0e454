"""SQL models, the session factory, repository functions and Alembic migrations."""
