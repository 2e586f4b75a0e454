"""GET /metrics in process, on SQLite and PostgreSQL: the job figures counted in SQL (each
dialect's own time arithmetic for the pickup latency) and HTTP latency per route template."""

from datetime import timedelta

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

TINY = {"layers": [{"units": 16}], "epochs": 1, "batch_size": 128, "train_samples": 1000}


def samples(client: TestClient) -> dict:
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def test_metrics_count_jobs_epochs_pickup_and_requests(client):
    from db.models import EpochRow, Experiment
    from db.session import session_scope

    ids = [client.post("/experiments", json=TINY).json()["id"] for _ in range(3)]
    client.get(f"/experiments/{ids[0]}")
    with session_scope() as session:  # one job as a worker leaves it: trained, 2.5 s after submit
        done = session.get(Experiment, ids[0])
        done.status, done.started_at = "succeeded", done.created_at + timedelta(seconds=2.5)
        done.finished_at, done.train_seconds = done.started_at + timedelta(seconds=40), 40.0
        session.add(EpochRow(experiment_id=ids[0], epoch=1, seconds=0.3))
        running = session.get(Experiment, ids[1])
        running.status, running.worker = "running", "host-a:4242"

    m = samples(client)
    assert m[("labq_jobs", frozenset({("status", "succeeded")}))] == 1
    assert m[("labq_jobs", frozenset({("status", "running")}))] == 1
    assert m[("labq_jobs", frozenset({("status", "failed")}))] == 0
    assert m[("labq_queue_depth", frozenset())] == 1
    assert m[("labq_queue_oldest_age_seconds", frozenset())] >= 0
    assert m[("labq_running_jobs", frozenset({("worker", "host-a:4242")}))] == 1
    assert m[("labq_job_train_seconds_count", frozenset())] == 1
    assert m[("labq_job_train_seconds_bucket", frozenset({("le", "30.0")}))] == 0
    assert m[("labq_job_train_seconds_bucket", frozenset({("le", "60.0")}))] == 1
    assert m[("labq_epoch_seconds_sum", frozenset())] == 0.3
    assert abs(m[("labq_pickup_seconds_sum", frozenset())] - 2.5) < 0.01
    assert m[("labq_pickup_seconds_bucket", frozenset({("le", "1.0")}))] == 0
    assert m[("labq_pickup_seconds_bucket", frozenset({("le", "5.0")}))] == 1
    post = frozenset({("route", "/experiments"), ("method", "POST"), ("status", "202")})
    assert m[("labq_http_request_seconds_count", post)] == 3
    by_id = frozenset(
        {("route", "/experiments/{experiment_id}"), ("method", "GET"), ("status", "200")}
    )
    assert m[("labq_http_request_seconds_count", by_id)] == 1
