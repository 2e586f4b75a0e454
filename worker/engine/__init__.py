"""Training engine: spec and arrays in, history and arrays out. Knows nothing of Celery or SQL."""
