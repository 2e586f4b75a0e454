"""A real labq stack for tests: cli.livestack.LiveStack (`labq up` in a temporary data dir on free
ports, with the embedded Redis and SQLite, or with PostgreSQL and a separately started Redis) plus
the HTTP helpers the tests assert with."""

import subprocess
import sys
import time
import uuid

import httpx
from sqlalchemy import create_engine, text

from cli.livestack import ROOT, LiveStack, free_port
from core.constants import FINISHED
from worker.testhooks import hold_paths

__all__ = ["ROOT", "Stack", "create_pg_database", "free_port"]


def create_pg_database(admin_url: str) -> str:
    """A fresh database per stack, so legs and runs never see each other's rows."""
    import psycopg

    name = f"labq_{uuid.uuid4().hex[:10]}"
    plain = admin_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + "/" + name


class Stack(LiveStack):
    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)

    def cli(
        self, *args, check: bool = True, timeout: float = 300, env_token: str = ""
    ) -> subprocess.CompletedProcess:
        """`labq ARGS` as a user types it, with this stack's settings (and LABQ_TOKEN)."""
        token = {"LABQ_TOKEN": env_token} if env_token else {}
        out = subprocess.run(
            [sys.executable, "-m", "cli.main", *args],
            cwd=ROOT,
            env={**self.env, "LABQ_URL": self.url, "COLUMNS": "200", **token},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check:
            assert out.returncode == 0, out.stdout + out.stderr
        return out

    def submit(self, spec: dict) -> int:
        r = httpx.post(f"{self.url}/experiments", json=spec, timeout=30)
        assert r.status_code == 202, r.text
        return r.json()["id"]

    def get(self, exp_id: int) -> dict:
        return httpx.get(f"{self.url}/experiments/{exp_id}", timeout=30).json()

    def wait(self, exp_id: int, statuses=FINISHED, timeout: float = 600, until=None) -> dict:
        """Poll until the experiment reaches one of `statuses` (or `until(exp)` is true)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            exp = self.get(exp_id)
            if until(exp) if until else exp["status"] in statuses:
                return exp
            time.sleep(0.2)
        raise TimeoutError(f"experiment {exp_id} stuck at {self.get(exp_id)}\n{self.logs()}")

    # --- the worker's hold hook (worker/testhooks.py, LABQ_TEST_HOLD_IN_EPOCH) -----------------
    def held(self, exp_id: int, timeout: float = 300, n: int = 1) -> int:
        """Wait until the worker holds `exp_id` inside the hook's epoch (its n-th hold, when the
        hook names the job n times); return the worker's pid."""
        held, _ = hold_paths(self.data_dir, exp_id, n)
        deadline = time.monotonic() + timeout
        while not (held.exists() and held.read_text().strip()):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"experiment {exp_id} never held: {self.get(exp_id)}\n{self.logs()}"
                )
            time.sleep(0.05)
        return int(held.read_text())

    def release(self, exp_id: int, n: int = 1) -> None:
        _, release = hold_paths(self.data_dir, exp_id, n)
        release.parent.mkdir(parents=True, exist_ok=True)
        release.touch()

    # --- reading the database behind the API, for what the API does not expose ---------------
    @property
    def sql_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'labq.db'}"

    def sql(self, query: str, **params) -> list[tuple]:
        engine = create_engine(self.sql_url)
        try:
            with engine.begin() as conn:
                return [tuple(r) for r in conn.execute(text(query), params)]
        finally:
            engine.dispose()

    def epoch_attempts(self, exp_id: int) -> list[tuple[int, int]]:
        """(epoch, attempt that wrote it) for each stored epoch row."""
        return self.sql(
            "SELECT epoch, attempt FROM epochs WHERE experiment_id = :i ORDER BY epoch", i=exp_id
        )
