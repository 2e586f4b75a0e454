"""A real labq stack for tests: cli.livestack.LiveStack (`labq up` in a temporary data dir on free
ports, with the embedded Redis and SQLite, or with PostgreSQL and a separately started Redis) plus
the HTTP helpers the tests assert with."""

import os
import signal
import subprocess
import sys
import time
import uuid

import httpx
from sqlalchemy import create_engine, text

from cli.livestack import ROOT, LiveStack, free_port
from core.constants import FINISHED
from worker.testhooks import hold_paths

__all__ = ["ROOT", "DistributedStack", "Stack", "create_pg_database", "free_port"]


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


class DistributedStack(Stack):
    """The distributed configuration as docker-compose runs it, as plain processes: its own Redis
    server (password, append-only file, restartable), `labq migrate` once, `labq api`, and
    `workers` separate `labq worker` processes, each in its own process group (killing the group
    is a host or container dying) and with its own host name (`LABQ_WORKER_HOST=host-<i>`), as if
    each ran on a host of its own. Every process shares the data dir only for the test hooks'
    markers and the logs (logs/api.log, logs/worker-<i>.log)."""

    def __init__(self, data_dir, database_url: str, workers: int = 1, **kw) -> None:
        super().__init__(data_dir, database_url=database_url, **kw)
        self.workers = workers
        self.redis_proc: subprocess.Popen | None = None
        self.api_proc: subprocess.Popen | None = None
        self.worker_procs: dict[int, subprocess.Popen] = {}
        self.redis_url = f"redis://:distributed-stack@127.0.0.1:{self.redis_port}/0"

    def _spawn(self, name: str, argv: list[str], env: dict | None = None) -> subprocess.Popen:
        logs = self.data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        fd = os.open(logs / f"{name}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with open(fd, "ab") as log:
            return subprocess.Popen(
                argv,
                cwd=ROOT,
                env=env or self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    # --- Redis ---------------------------------------------------------------------------------
    def start_redis(self) -> None:
        import redis

        from cli.stack import redis_server_binary, write_redis_config

        rdir = self.data_dir / "broker"
        rdir.mkdir(parents=True, exist_ok=True)
        conf = write_redis_config(rdir / "redis.conf", "distributed-stack")
        self.redis_proc = self._spawn(
            "redis",
            [str(redis_server_binary()), str(conf), "--port", str(self.redis_port)]
            + ["--bind", "127.0.0.1", "--dir", str(rdir), "--save", "", "--appendonly", "yes"],
        )
        client = redis.Redis.from_url(self.redis_url, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                return
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"redis did not start\n{self.logs()}") from None
                time.sleep(0.1)

    def kill_redis(self) -> None:
        """SIGKILL: whatever its append-only file had not yet written is lost."""
        if self.redis_proc and self.redis_proc.poll() is None:
            self.redis_proc.kill()
            self.redis_proc.wait()

    # --- workers -------------------------------------------------------------------------------
    def start_worker(self, i: int) -> subprocess.Popen:
        env = {**self.env, "LABQ_WORKER_HOST": f"host-{i}"}
        proc = self._spawn(f"worker-{i}", [sys.executable, "-m", "cli.main", "worker"], env)
        self.worker_procs[i] = proc
        return proc

    def worker_of(self, pid: int) -> int:
        """Which worker (index) a process belongs to: its process group is the worker's."""
        pgid = os.getpgid(pid)
        return next(i for i, p in self.worker_procs.items() if p.pid == pgid)

    def kill_worker(self, i: int) -> None:
        """SIGKILL the whole worker (its Celery parent and its pool child), as a host dying."""
        proc = self.worker_procs[i]
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def wait_workers(self, n: int, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                h = httpx.get(f"{self.url}/health", timeout=5).json()
                if h["status"] == "ok" and len(h["workers"]) >= n:
                    return
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{n} workers never answered\n{self.logs()}")
            time.sleep(0.3)

    # --- the whole stack -----------------------------------------------------------------------
    def start(self, wait_workers: bool = True, timeout: float = 180) -> "DistributedStack":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.start_redis()
        migrate = subprocess.run(
            [sys.executable, "-m", "cli.main", "migrate"],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert migrate.returncode == 0, migrate.stdout + migrate.stderr
        self.api_proc = self._spawn("api", [sys.executable, "-m", "cli.main", "api"])
        self.proc = self.api_proc  # what LiveStack's helpers look at
        for i in range(self.workers):
            self.start_worker(i)
        if wait_workers:
            self.wait_workers(self.workers, timeout)
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> None:
        procs = [*self.worker_procs.values(), self.api_proc]
        for proc in procs:
            if proc and proc.poll() is None:
                os.killpg(proc.pid, sig)
        for proc in procs:
            if proc:
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        if self.redis_proc and self.redis_proc.poll() is None:
            self.redis_proc.terminate()
            self.redis_proc.wait(timeout)

    def child_pid(self, name: str) -> int | None:
        proc = {"api": self.api_proc, "redis": self.redis_proc}.get(name)
        return proc.pid if proc else None

    def logs(self, tail: int = 4000) -> str:
        out = []
        for path in sorted((self.data_dir / "logs").glob("*.log")):
            out.append(f"--- {path.name}\n" + path.read_text(errors="replace")[-tail:])
        return "\n".join(out)
