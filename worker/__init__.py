"""The Celery worker: claims jobs from SQL, trains them with `worker.engine`, writes results back."""
