"""Deleting, in process on SQLite and PostgreSQL: who may delete (owner or admin; others 403
naming the owner, viewers 403), what goes (the runs, their epochs and artifacts, the sweep or
search row; nothing of anyone else's), the space SQLite gives back, and `labq gc`."""

from datetime import timedelta

import numpy as np
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from typer.testing import CliRunner

from tests.api.test_teams_routes import SWEEP, TINY, submit, team

SEARCH = {
    "name": "lr",
    "base": {**TINY, "validation": {"holdout": 200}},
    "space": {"optimizer.learning_rate": {"type": "float", "low": 1e-4, "high": 0.1, "log": True}},
    "objective": {"metric": "val_accuracy", "direction": "maximize"},
    "trials": 4,
    "parallel": 2,
}


def results(experiment_id: int, artifact_bytes: int = 0, epochs: int = 2) -> None:
    """Give a run what a worker leaves: epoch rows and an artifact of `artifact_bytes`, finished."""
    from db import repo
    from db.models import Experiment, utcnow
    from db.session import session_scope

    noise = np.random.default_rng(experiment_id).bytes(artifact_bytes)  # incompressible
    with session_scope() as session:
        for epoch in range(1, epochs + 1):
            repo.record_epoch(
                session,
                experiment_id,
                1,
                {
                    "epoch": epoch,
                    "loss": 1.0,
                    "accuracy": 0.5,
                    "val_loss": None,
                    "val_accuracy": None,
                    "learning_rate": 0.01,
                    "seconds": 0.1,
                    "grad_norms": None,
                },
            )
        repo.put_artifact(
            session, experiment_id, repo.CHECKPOINT, "application/octet-stream", noise
        )
        session.execute(
            update(Experiment)
            .where(Experiment.id == experiment_id)
            .values(status="succeeded", finished_at=utcnow())
        )


def counts(experiment_ids: list[int]) -> tuple[int, int, int]:
    """(experiments, epochs, artifacts) rows left of these runs."""
    from db.models import Artifact, EpochRow, Experiment
    from db.session import session_scope

    with session_scope() as s:
        return (
            s.scalar(select(func.count()).where(Experiment.id.in_(experiment_ids))) or 0,
            s.scalar(select(func.count()).where(EpochRow.experiment_id.in_(experiment_ids))) or 0,
            s.scalar(select(func.count()).where(Artifact.experiment_id.in_(experiment_ids))) or 0,
        )


def audit_actions(client: TestClient, admin: dict[str, str]) -> list[tuple[str, str, str]]:
    return [
        (e["actor"], e["action"], e["target"]) for e in client.get("/audit", headers=admin).json()
    ]


def test_owner_or_admin_deletes_a_run_with_its_epochs_and_artifacts(make_client):
    client = make_client()
    t = team(client)
    mine, other = submit(client, t["alice"]), submit(client, t["bob"])
    results(mine, artifact_bytes=1000)
    results(other, artifact_bytes=1000)

    for who in ("bob", "viola"):
        r = client.delete(f"/experiments/{mine}", headers=t[who])
        assert r.status_code == 403, r.text
        assert "'alice'" in r.json()["detail"] or "viewer" in r.json()["detail"], r.text
    assert counts([mine]) == (1, 2, 1)  # nothing went

    r = client.delete(f"/experiments/{mine}", headers=t["alice"])  # no content type: none needed
    assert r.status_code == 200, r.text
    assert r.json() == {
        "experiments": [mine],
        "stopped": [],
        "epochs": 2,
        "artifacts": 1,
        "artifact_bytes": 1000,
    }
    assert counts([mine]) == (0, 0, 0)
    assert counts([other]) == (1, 2, 1)  # bob's run is untouched
    assert client.get(f"/experiments/{mine}").status_code == 404
    assert client.delete(f"/experiments/{mine}", headers=t["alice"]).status_code == 404

    queued = submit(client, t["bob"])
    r = client.delete(f"/experiments/{queued}", headers=t["root"])  # an admin deletes anyone's
    assert r.status_code == 200 and r.json()["stopped"] == [queued], r.text
    assert ("alice", "experiment.delete", f"experiment {mine} (1 runs)") in audit_actions(
        client, t["root"]
    )
    assert ("root", "experiment.delete", f"experiment {queued} (1 runs)") in audit_actions(
        client, t["root"]
    )


def test_a_cross_site_delete_is_refused(make_client):
    client = make_client()
    exp = submit(client, {})
    r = client.delete(f"/experiments/{exp}", headers={"Origin": "http://evil.example"})
    assert r.status_code == 403 and "cross-site" in r.json()["detail"]
    r = client.delete(f"/experiments/{exp}", headers={"Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403
    assert counts([exp])[0] == 1


def test_a_sweep_goes_whole_and_its_runs_only_with_it(make_client):
    client = make_client()
    t = team(client)
    sweep = client.post("/sweeps", json=SWEEP, headers=t["bob"]).json()
    children = sweep["children"]
    results(children[0], artifact_bytes=10)

    r = client.delete(f"/experiments/{children[0]}", headers=t["bob"])
    assert r.status_code == 409, r.text
    assert f"DELETE /sweeps/{sweep['id']}" in r.json()["detail"]
    r = client.delete(f"/sweeps/{sweep['id']}", headers=t["alice"])
    assert r.status_code == 403 and "'bob'" in r.json()["detail"]

    r = client.delete(f"/sweeps/{sweep['id']}", headers=t["bob"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert sorted(body["experiments"]) == sorted(children)
    assert body["stopped"] == children[1:]  # the one with results had finished
    assert (body["epochs"], body["artifacts"]) == (2, 1)
    assert counts(children) == (0, 0, 0)
    assert client.get(f"/sweeps/{sweep['id']}").status_code == 404
    assert client.get("/sweeps").json() == []


def test_a_search_goes_with_every_trial_and_keeps_its_priority(make_client):
    client = make_client()
    t = team(client)
    r = client.post("/searches?priority=low", json=SEARCH, headers=t["alice"])
    assert r.status_code == 202, r.text
    search, trials = r.json()["id"], r.json()["trials"]
    assert client.get(f"/searches/{search}").json()["priority"] == "low"
    assert {client.get(f"/experiments/{i}").json()["priority"] for i in trials} == {"low"}
    r = client.delete(f"/experiments/{trials[0]}", headers=t["alice"])
    assert r.status_code == 409 and f"DELETE /searches/{search}" in r.json()["detail"]

    r = client.delete(f"/searches/{search}", headers=t["bob"])
    assert r.status_code == 403 and "'alice'" in r.json()["detail"]
    r = client.delete(f"/searches/{search}", headers=t["alice"])
    assert r.status_code == 200 and sorted(r.json()["experiments"]) == sorted(trials), r.text
    assert counts(trials) == (0, 0, 0)
    assert client.get(f"/searches/{search}").status_code == 404


def test_sqlite_gives_the_space_back(make_client, backend):
    client = make_client()
    if backend != "sqlite":
        return  # PostgreSQL's space is reused after (auto)vacuum; the rows' removal is tested above
    from db.session import get_engine

    def file_bytes() -> int:
        with get_engine().connect() as c:
            pages = c.exec_driver_sql("PRAGMA page_count").scalar() or 0
            size = c.exec_driver_sql("PRAGMA page_size").scalar() or 0
            return int(pages) * int(size)

    with get_engine().connect() as c:
        assert c.exec_driver_sql("PRAGMA auto_vacuum").scalar() == 2  # incremental
    exp = submit(client, {})
    before = file_bytes()
    results(exp, artifact_bytes=4_000_000)
    grown = file_bytes()
    assert grown - before > 4_000_000
    assert client.delete(f"/experiments/{exp}").status_code == 200
    assert file_bytes() < before + 200_000, (before, grown, file_bytes())
    with get_engine().connect() as c:
        assert c.exec_driver_sql("PRAGMA freelist_count").scalar() == 0


def test_gc_deletes_what_finished_before_the_cutoff_and_nothing_else(make_client):
    from cli.main import app
    from db.models import Experiment, Sweep, utcnow
    from db.session import session_scope

    client = make_client()
    t = team(client)
    old_alice, old_bob = submit(client, t["alice"]), submit(client, t["bob"])
    recent = submit(client, t["alice"])
    queued = submit(client, t["alice"])  # never finished: gc never touches it
    sweep = client.post("/sweeps", json=SWEEP, headers=t["alice"]).json()
    for i in (old_alice, old_bob, recent, *sweep["children"]):
        results(i, artifact_bytes=100)
    long_ago = utcnow() - timedelta(days=40)
    with session_scope() as s:
        ids = [old_alice, old_bob, *sweep["children"]]
        s.execute(update(Experiment).where(Experiment.id.in_(ids)).values(finished_at=long_ago))
        s.execute(update(Sweep).where(Sweep.id == sweep["id"]).values(created_at=long_ago))
    everything = [old_alice, old_bob, recent, queued, *sweep["children"]]

    runner = CliRunner()
    out = runner.invoke(app, ["gc", "--older-than", "30d", "--dry-run"])
    assert out.exit_code == 0, out.output
    assert "would delete 3" in out.output
    assert counts(everything)[0] == len(everything)

    out = runner.invoke(app, ["gc", "--older-than", "30d", "--owner", "alice"])
    assert out.exit_code == 0, out.output
    assert "deleted 2: 3 run(s), 6 epoch rows, 3 artifacts" in out.output, out.output
    assert counts([old_alice, *sweep["children"]]) == (0, 0, 0)
    assert counts([old_bob, recent, queued]) == (3, 4, 2)  # bob's and the recent ones stay

    out = runner.invoke(app, ["gc", "--older-than", "30d"])
    assert "deleted 1: 1 run(s)" in out.output, out.output
    assert counts([old_bob]) == (0, 0, 0) and counts([recent, queued])[0] == 2
    actions = {(a, target) for _, a, target in audit_actions(client, t["root"])}
    assert ("sweep.delete", f"sweep {sweep['id']} (gc 30d)") in actions

    bad = runner.invoke(app, ["gc", "--older-than", "30 days"])
    assert bad.exit_code == 2 and "30d, 12h, 90m" in bad.output
