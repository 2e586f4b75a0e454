"""Route rules of /searches in process, on SQLite and PostgreSQL: a bad space, path, base or cost
is a 422 naming the field with nothing stored; a search queues `parallel` trials as ordinary
experiments; and, driving trials' ends by hand the way the worker records them (no worker, no
TensorFlow here), Optuna's pruner and the search's bookkeeping: new trials asked as trials end,
`parallel` and `trials` never exceeded, the confirmation queued, the winner chosen by its rule
and only its test accuracy reported."""

import pytest
from fastapi.testclient import TestClient

from core.constants import PRUNED, SUCCEEDED

TINY = {
    "layers": [{"units": 16}],
    "epochs": 3,
    "batch_size": 128,
    "train_samples": 1000,
    "validation": {"holdout": 200},
}
SPACE = {
    "optimizer.learning_rate": {"type": "float", "low": 1e-4, "high": 0.3, "log": True},
    "layers.0.units": {"type": "int", "low": 8, "high": 64, "log": True},
    "layers.0.activation": {"type": "categorical", "choices": ["relu", "tanh"]},
}
GOALS = [
    {"metric": "val_accuracy", "direction": "maximize"},
    {"metric": "params", "direction": "minimize"},
]


def body(**over):
    return {"name": "s", "base": TINY, "space": SPACE, "trials": 4, "parallel": 2, **over}


def totals(client: TestClient) -> tuple[int, int]:
    searches = client.get("/searches", params={"limit": 1})
    exps = client.get("/experiments", params={"limit": 1}).json()["total"]
    return int(searches.headers["x-total-count"]), exps


@pytest.mark.parametrize(
    "over, field",
    [
        (
            {"space": {"layers.7.units": {"type": "int", "low": 8, "high": 16}}},
            "space.layers.7.units",
        ),
        (
            {"space": {"layers.0.units": {"type": "int", "low": 64, "high": 8}}},
            "space.layers.0.units.low",
        ),
        (
            {"space": {"layers.0.activation": {"type": "categorical", "choices": ["relu", "x"]}}},
            "space.layers.0.activation",
        ),
        (
            {
                "space": {
                    "optimizer.learning_rate": {"type": "float", "low": 0, "high": 1, "log": True}
                }
            },
            "space.optimizer.learning_rate.low",
        ),
        (
            {
                "base": {**TINY, "epochs": 500, "train_samples": None},
                "space": {"layers.0.units": {"type": "int", "low": 8, "high": 8192}},
            },
            "space",
        ),  # the largest point is over the cost cap
        ({"base": {**TINY, "validation": "test"}}, "base.validation"),
        ({"base": {**TINY, "epochs": 0}}, "base.epochs"),
        ({"sampler": "grid"}, "space.optimizer.learning_rate.type"),
        ({"sampler": "annealing"}, "sampler"),
        (
            {
                "sampler": "cmaes",
                "space": {"layers.0.activation": {"type": "categorical", "choices": ["relu"]}},
            },
            "sampler",
        ),  # cmaes needs a float or int dimension
        ({"objectives": [GOALS[0]]}, "objectives"),  # several means two or three
        ({"objectives": [GOALS[0], GOALS[0]]}, "objectives.1.metric"),
        (
            {"objectives": [GOALS[0], {"metric": "test_accuracy", "direction": "maximize"}]},
            "objectives.1.metric",
        ),
        ({"objectives": GOALS, "objective": {"metric": "val_loss"}}, "objectives"),
        ({"objectives": GOALS, "pruner": {"type": "asha"}}, "pruner.type"),
        ({"objectives": GOALS, "sampler": "cmaes"}, "sampler"),
        (
            {
                "sampler": "grid",
                "space": {"layers.0.units": {"type": "int", "low": 1, "high": 10**18}},
            },
            "space.layers.0.units",
        ),
        ({"pruner": {"type": "asha", "min_epochs": 0}}, "pruner.min_epochs"),
        ({"trials": 0}, "trials"),
        ({"space": {}}, "space"),
    ],
)
def test_bad_searches_are_422_and_store_nothing(client, over, field):
    before = totals(client)
    r = client.post("/searches", json=body(**over))
    assert r.status_code == 422, r.text
    assert any(d["field"] == field for d in r.json()["detail"]), r.json()
    assert totals(client) == before


def test_a_search_queues_parallel_trials_as_experiments(client):
    r = client.post("/searches", json=body())
    assert r.status_code == 202, r.text
    assert r.headers["location"] == r.json()["url"]
    ids = r.json()["trials"]
    assert len(ids) == 2
    exps = client.get("/experiments", params={"limit": 10}).json()
    assert exps["total"] == 2 and {e["status"] for e in exps["items"]} == {"queued"}
    s = client.get(r.json()["url"]).json()
    assert s["trials_asked"] == 2 and s["trials_target"] == 4
    assert s["status"] == "queued" and s["result"] is None
    for t in s["trials"]:
        assert 8 <= t["params"]["layers.0.units"] <= 64
        assert t["params"]["layers.0.activation"] in ("relu", "tanh")
        spec = client.get(f"/experiments/{t['id']}").json()["spec"]
        assert spec["layers"][0]["units"] == t["params"]["layers.0.units"]
    listed = client.get("/searches").json()
    assert [x["id"] for x in listed] == [s["id"]]
    assert client.get("/searches/999999").status_code == 404
    for fig in ("progress.png", "parallel.png", "importance.png", "importance"):
        assert client.get(f"/searches/{s['id']}/{fig}").status_code == 409


def test_cancel_stops_asking_and_cancels_queued_trials(client):
    sid = client.post("/searches", json=body()).json()["id"]
    r = client.post(f"/searches/{sid}/cancel", json={})
    assert r.status_code == 202, r.text
    s = r.json()
    assert s["status"] == "cancelled"
    assert {t["status"] for t in s["trials"]} == {"cancelled"}
    _end_all(sid)  # nothing more is asked
    assert client.get(f"/searches/{sid}").json()["trials_asked"] == 2


def _finish(
    exp_id: int, curve: list[float], params: int, status: str = SUCCEEDED, seconds: float = 1.0
) -> list[int]:
    """What the worker does: epochs in one transaction each (the pruner consulted after each),
    then the end and the next trials in one transaction. Returns the trials asked for."""
    from db import repo, searches
    from db.session import session_scope

    for epoch, v in enumerate(curve, start=1):
        with session_scope() as s:
            row = {"epoch": epoch, "loss": 1.0, "accuracy": v, "val_loss": 1.0 - v}
            repo.record_epoch(s, exp_id, 1, {**row, "val_accuracy": v})
            pruned = epoch < len(curve) and searches.should_prune(s, exp_id)
        if pruned:
            status = PRUNED
            break
    with session_scope() as s:
        repo.update_experiment(s, exp_id, params=params, status="running", train_seconds=seconds)
        repo.finish(s, exp_id, status, test_accuracy=0.5 + params / 1e6)
        return searches.top_up(s, repo.get(s, exp_id).search_id)


def _end_all(search_id: int) -> None:
    from db import searches
    from db.session import session_scope

    with session_scope() as s:
        searches.top_up(s, search_id)


@pytest.mark.parametrize("pruner", ["asha", "hyperband"])
def test_trials_are_asked_as_others_end_then_confirmed_and_concluded(client, pruner):
    spec = body(trials=6, parallel=2, pruner={"type": pruner, "min_epochs": 1})
    spec["confirm"] = {"top": 2, "seeds": 2}
    r = client.post("/searches", json=spec).json()
    sid, queue = r["id"], list(r["trials"])
    ended = 0
    while queue:
        exp = queue.pop(0)
        # Trial 1 beats trial 0, later ones learn slower: ASHA prunes them at a rung.
        v = {0: 0.8, 1: 0.9}.get(ended, 0.7 - 0.1 * ended)
        queue += _finish(exp, [v - 0.1, v - 0.05, v], params=1000 + ended)
        ended += 1
        s = client.get(f"/searches/{sid}").json()
        in_flight = sum(t["status"] in ("queued", "running") for t in s["trials"])
        assert in_flight <= 2 and s["trials_asked"] <= 6
        if s["trials_asked"] == 6 and not in_flight:
            break
    s = client.get(f"/searches/{sid}").json()
    assert s["counts"].get("pruned", 0) >= 1, s["counts"]
    pruned = [t for t in s["trials"] if t["status"] == "pruned"]
    assert all(t["epochs_done"] < 3 for t in pruned)
    assert s["best"]["number"] == 1
    confirm = s["confirmation"]
    assert len(confirm) == 4 and {c["confirm_of"] for c in confirm} == {0, 1}
    assert s["result"] is None
    # Confirmation: both configurations tie within noise; the cheaper one (fewer params) wins.
    for i, c in enumerate(confirm):
        params = 5000 if c["confirm_of"] == 1 else 2000
        _finish(c["id"], [0.8, 0.85, 0.88 + 0.01 * (i % 2)], params=params)
    s = client.get(f"/searches/{sid}").json()
    result = s["result"]
    assert result is not None and s["status"] == "done"
    assert result["params"] == 2000 and result["winner"] == 0
    assert result["test_accuracy"] == pytest.approx(0.5 + 2000 / 1e6)
    assert all(c["tied_with_best"] for c in result["configs"])
    for fig in ("progress", "parallel", "importance"):
        png = client.get(f"/searches/{sid}/{fig}.png")
        assert png.status_code == 200 and png.content[:4] == b"\x89PNG", (fig, png.text)
    imp = client.get(f"/searches/{sid}/importance").json()
    assert set(imp) == set(SPACE) and sum(imp.values()) == pytest.approx(1.0)


def test_a_grid_search_visits_each_point_once(client):
    space = {
        "layers.0.units": {"type": "int", "low": 8, "high": 16, "step": 8},
        "layers.0.activation": {"type": "categorical", "choices": ["relu", "tanh"]},
    }
    r = client.post(
        "/searches", json=body(space=space, sampler="grid", trials=10, parallel=3)
    ).json()
    sid, queue = r["id"], list(r["trials"])
    while queue:
        queue += _finish(queue.pop(0), [0.5, 0.6, 0.7], params=100)
    s = client.get(f"/searches/{sid}").json()
    points = {tuple(sorted(t["params"].items())) for t in s["trials"]}
    assert s["trials_asked"] == 4 and len(points) == 4  # the grid has 4 points
    assert s["status"] == "done"


def test_cancelling_one_queued_trial_asks_the_next(client):
    r = client.post("/searches", json=body()).json()
    assert client.post(f"/experiments/{r['trials'][0]}/cancel", json={}).status_code == 202
    s = client.get(f"/searches/{r['id']}").json()
    assert s["trials_asked"] == 3 and s["counts"] == {"cancelled": 1, "queued": 2}


def test_no_trial_is_asked_after_timeout_seconds(client):
    from datetime import timedelta

    from db.models import Search
    from db.session import session_scope

    r = client.post("/searches", json=body(timeout_seconds=60)).json()
    with session_scope() as s:  # the search was created 61 s ago
        search = s.get(Search, r["id"])
        assert search is not None
        search.created_at = search.created_at - timedelta(seconds=61)
    _finish(r["trials"][0], [0.5, 0.6, 0.7], params=100)
    _finish(r["trials"][1], [0.5, 0.6, 0.8], params=100)
    s = client.get(f"/searches/{r['id']}").json()
    assert s["trials_asked"] == 2 and s["status"] == "done"
    assert s["result"]["winner"] == 1


@pytest.mark.parametrize("sampler", ["nsga2", "tpe"])
def test_several_objectives_answer_with_the_pareto_front(client, sampler):
    r = client.post(
        "/searches", json=body(objectives=GOALS, sampler=sampler, trials=8, parallel=2)
    ).json()
    sid, queue = r["id"], list(r["trials"])
    s = client.get(f"/searches/{sid}").json()
    assert s["spec"]["pruner"]["type"] == "none"  # several objectives: no pruner
    assert client.get(f"/searches/{sid}/pareto.png").status_code == 409
    # (val_accuracy, params) per trial in the order they end: #2 is dominated by #1, #4 by #3.
    points = [(0.80, 100), (0.90, 300), (0.85, 400), (0.95, 900), (0.94, 950), (0.70, 50)]
    points += [(0.60, 60), (0.96, 2000)]
    ended = {}
    while queue:
        exp = queue.pop(0)
        acc, params = points[len(ended)]  # trials end in the order they were asked
        queue += _finish(exp, [acc - 0.1, acc - 0.05, acc], params=params)
        ended[exp] = (acc, params)
    s = client.get(f"/searches/{sid}").json()
    assert s["status"] == "done" and s["best"] is None
    assert [o["metric"] for o in s["objectives"]] == ["val_accuracy", "params"]
    by_number = {t["number"]: ended[t["id"]] for t in s["trials"]}
    front = {
        n
        for n, (a, p) in by_number.items()
        if not any(a2 >= a and p2 <= p and (a2, p2) != (a, p) for a2, p2 in by_number.values())
    }
    assert set(s["pareto_front"]) == front and s["result"]["pareto_front"] == sorted(front)
    assert s["result"]["test_accuracy"] is None and s["result"]["winner"] is None
    for t in s["trials"]:
        assert t["values"] == [pytest.approx(by_number[t["number"]][0]), by_number[t["number"]][1]]
    for fig in ("pareto", "progress", "parallel", "importance"):
        png = client.get(f"/searches/{sid}/{fig}.png")
        assert png.status_code == 200 and png.content[:4] == b"\x89PNG", (fig, png.text)
    assert set(client.get(f"/searches/{sid}/importance").json()) == set(SPACE)


def test_the_pareto_front_is_confirmed_on_new_seeds(client):
    """Several objectives with `confirm`: the front's points (best first by the first objective,
    `top` of them) re-run on new seeds; the answer gives each one's mean ± std per objective and
    the front again on those means; the test set is still not read."""
    spec = body(objectives=GOALS, sampler="nsga2", trials=4, parallel=4)
    spec["confirm"] = {"top": 2, "seeds": 2}
    r = client.post("/searches", json=spec)
    assert r.status_code == 202, r.text
    sid, trials = r.json()["id"], r.json()["trials"]
    # (val_accuracy, params): trials 0, 1 and 3 form the front; 2 is dominated by 1.
    points = [(0.80, 100), (0.90, 300), (0.85, 400), (0.95, 900)]
    asked = []
    for exp, (acc, params) in zip(trials, points, strict=True):
        asked += _finish(exp, [acc - 0.1, acc - 0.05, acc], params=params)
    s = client.get(f"/searches/{sid}").json()
    assert s["pareto_front"] == [0, 1, 3] and s["result"] is None
    confirm = s["confirmation"]
    assert sorted(asked) == sorted(c["id"] for c in confirm)
    assert len(confirm) == 4 and {c["confirm_of"] for c in confirm} == {3, 1}  # top 2 by accuracy
    # On new seeds trial 3 does no better than trial 1 and is bigger: it leaves the front.
    seen = {3: [0.88, 0.86], 1: [0.90, 0.92]}
    for c in confirm:
        acc = seen[c["confirm_of"]].pop()
        _finish(c["id"], [acc - 0.1, acc - 0.05, acc], params=900 if c["confirm_of"] == 3 else 300)
    s = client.get(f"/searches/{sid}").json()
    result = s["result"]
    assert s["status"] == "done" and result["pareto_front"] == [0, 1, 3]
    assert result["confirmed_front"] == [1]
    by_trial = {p["trial"]: p for p in result["confirmed"]}
    assert by_trial[1]["means"] == [pytest.approx(0.91), 300]
    assert by_trial[3]["means"] == [pytest.approx(0.87), 900] and by_trial[3]["n"] == 2
    assert by_trial[1]["stds"][0] == pytest.approx(0.01414, abs=1e-4)
    assert result["test_accuracy"] is None and result["winner"] is None


def test_several_objectives_may_weigh_training_seconds(client):
    goals = [GOALS[0], {"metric": "train_seconds", "direction": "minimize"}]
    r = client.post("/searches", json=body(objectives=goals, trials=2, parallel=2)).json()
    _finish(r["trials"][0], [0.5, 0.6, 0.9], params=10, seconds=30.0)
    _finish(r["trials"][1], [0.5, 0.6, 0.8], params=10, seconds=10.0)
    s = client.get(f"/searches/{r['id']}").json()
    assert s["result"]["pareto_front"] == [0, 1]
    assert [t["values"][1] for t in s["trials"]] == [30.0, 10.0]


def test_one_objective_has_no_pareto_front(client):
    sid = client.post("/searches", json=body()).json()["id"]
    assert client.get(f"/searches/{sid}").json()["pareto_front"] is None
    assert client.get(f"/searches/{sid}/pareto.png").status_code == 409


def test_a_cmaes_search_keeps_its_state_in_the_trials_rows(client):
    from db import searches
    from db.session import session_scope

    space = {
        "optimizer.learning_rate": {"type": "float", "low": 1e-4, "high": 0.3, "log": True},
        "layers.0.units": {"type": "int", "low": 8, "high": 64},
    }
    r = client.post(
        "/searches", json=body(space=space, sampler="cmaes", trials=12, parallel=2, seed=7)
    ).json()
    sid, queue = r["id"], list(r["trials"])
    while queue:
        exp = queue.pop(0)
        units = client.get(f"/experiments/{exp}").json()["spec"]["layers"][0]["units"]
        v = 0.9 - abs(units - 40) / 100  # best near 40 units
        queue += _finish(exp, [v - 0.1, v - 0.05, v], params=units)
    s = client.get(f"/searches/{sid}").json()
    assert s["status"] == "done" and s["trials_asked"] == 12
    with session_scope() as session:
        attrs = [
            (e.search_trial or {}).get("system_attrs", {}) for e in searches.members(session, sid)
        ]
    # After its first (random) trial, each trial was drawn by CMA-ES, which keeps its generation
    # and, once a generation is told, the optimizer itself in the trial's stored attributes.
    assert sum(any(k.startswith("cma:generation") for k in a) for a in attrs) >= 10
    assert any(any(k.startswith("cma:optimizer") for k in a) for a in attrs)
    assert all(8 <= t["params"]["layers.0.units"] <= 64 for t in s["trials"])


def test_section_12_runs_as_a_search_preset(client):
    preset = client.get("/presets/s12-search").json()
    assert preset["kind"] == "search" and preset["section"] == 12
    assert preset["search"]["pruner"]["type"] == "asha"
    before = totals(client)
    small = {"train_samples": 2000, "validation.holdout": 200, "epochs": 2}
    bad = client.post("/presets/s12-search/run", json={"repeats": 2, "overrides": small})
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "repeats"
    bad = client.post("/presets/s12-search/run", json={"overrides": {"layers.9.units": 3}})
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"].startswith("overrides")
    assert totals(client) == before
    r = client.post("/presets/s12-search/run", json={"overrides": small})
    assert r.status_code == 202, r.text
    s = client.get(r.json()["url"]).json()
    assert s["name"] == "s12-search" and s["trials_target"] == 40 and s["trials_asked"] == 2
    assert s["spec"]["base"]["train_samples"] == 2000 and s["spec"]["confirm"]["seeds"] == 3
