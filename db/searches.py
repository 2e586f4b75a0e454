"""Repository functions for searches: Optuna asks for trials, prunes them, and the confirmation.

Optuna's samplers and pruners run on a study rebuilt, under a lock on the search's row, from
labq's own rows: each trial is an experiment (`search_id`, `search_trial` = its number, params,
distributions and Optuna system attributes) and its intermediate values are its epochs. So the
study state lives in labq's SQL database, under labq's migrations and fenced writes; it survives
restarts and is shared by workers on several hosts; nothing else writes to the database.

Who asks: the API asks for the first `parallel` trials when it stores the search; a worker asks
for the next ones in the same transaction that records a trial's end (fenced by its attempt, so
a trial resumed after its worker died ends, and is counted, once). Both hold the search's row lock
(`_lock`), so two trials ending at once never overshoot `parallel` or `trials`.
"""

import math
import warnings
from collections import Counter
from typing import Any

import optuna
from scipy import stats
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from core.constants import CANCELLED, FAILED, FINISHED, PRUNED, QUEUED, RUNNING, SUCCEEDED
from core.search import SearchSpec, build, distribution, grid_values
from db import repo
from db.models import EpochRow, Experiment, Search, utcnow

optuna.logging.set_verbosity(optuna.logging.WARNING)
ALPHA = 0.05  # Welch's t-test: a difference with p >= ALPHA is inside run-to-run noise


def _lock(session: Session, search_id: int) -> Search | None:
    """Take the search's row lock (PostgreSQL: the row; SQLite: the database's write lock)."""
    session.execute(update(Search).where(Search.id == search_id).values(name=Search.name))
    return session.get(Search, search_id, populate_existing=True)


def spec_of(search: Search) -> SearchSpec:
    return SearchSpec.model_validate(search.spec)


def members(session: Session, search_id: int) -> list[Experiment]:
    return list(
        session.scalars(
            select(Experiment).where(Experiment.search_id == search_id).order_by(Experiment.id)
        )
    )


def is_trial(exp: Experiment) -> bool:
    return exp.search_trial is not None and "number" in exp.search_trial


def objective_values(session: Session, exp_ids: list[int], metric: str) -> dict[int, list[float]]:
    """{experiment id: objective per epoch, in epoch order} (missing epochs left out)."""
    out: dict[int, list[float]] = {i: [] for i in exp_ids}
    if not exp_ids:
        return out
    rows = session.execute(
        select(EpochRow.experiment_id, getattr(EpochRow, metric))
        .where(EpochRow.experiment_id.in_(exp_ids))
        .order_by(EpochRow.experiment_id, EpochRow.epoch)
    )
    for exp_id, value in rows:
        if value is not None and math.isfinite(value):
            out[exp_id].append(float(value))
    return out


def final_value(exp: Experiment, values: list[float]) -> float | None:
    """The objective of a finished trial: its last epoch's value."""
    if exp.status != SUCCEEDED or exp.diverged or not values:
        return None
    return values[-1]


def several(spec: SearchSpec) -> bool:
    return spec.objectives is not None


def trial_values(
    session: Session, spec: SearchSpec, exps: list[Experiment]
) -> dict[int, list[float] | None]:
    """{experiment id: its value per objective} for finished trials; None for a trial with no
    value (not succeeded, diverged, or a measure missing). Epoch metrics are the last epoch's."""
    ids = [e.id for e in exps]
    epoch_metrics = {g.metric for g in spec.goals() if g.metric.startswith("val_")}
    per_metric = {m: objective_values(session, ids, m) for m in epoch_metrics}
    out: dict[int, list[float] | None] = {}
    for e in exps:
        values: list[float] = []
        for g in spec.goals():
            if g.metric in per_metric:
                v = final_value(e, per_metric[g.metric][e.id])
            elif e.status != SUCCEEDED or e.diverged:
                v = None
            else:
                raw = e.train_seconds if g.metric == "train_seconds" else e.params
                v = float(raw) if raw is not None else None
            if v is None:
                break
            values.append(v)
        out[e.id] = values if len(values) == len(spec.goals()) else None
    return out


def pareto_front(session: Session, search: Search, trials: list[Experiment]) -> list[int]:
    """The numbers of the completed trials no other completed trial dominates (Optuna's
    `best_trials` on the rebuilt study), in trial order. Several objectives only."""
    st = study(session, search, trials)
    numbers = [(t.search_trial or {})["number"] for t in trials]
    return sorted(numbers[t.number] for t in st.best_trials)


def _sampler(spec: SearchSpec, salt: int) -> optuna.samplers.BaseSampler:
    # The study is rebuilt for every ask: a fixed seed would repeat the same draw, so it moves on
    # with the number of trials asked so far.
    seed = None if spec.seed is None else spec.seed + salt
    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if spec.sampler == "grid":
        # Its seed shuffles the order of the grid's points, which `grid_id` indexes: it must not
        # move between rebuilds.
        return optuna.samplers.GridSampler(
            {p: grid_values(d) for p, d in spec.space.items()}, seed=spec.seed
        )
    if spec.sampler == "cmaes":
        # Its state (the CMA optimizer, per generation) is kept in the trials' system attributes,
        # which labq stores on each trial's row. Pruned trials count with their last value.
        with warnings.catch_warnings():  # consider_pruned_trials is marked experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.CmaEsSampler(
                seed=seed, consider_pruned_trials=True, warn_independent_sampling=False
            )
    if spec.sampler == "nsga2":
        # A generation is `population_size` trials; small searches get small generations.
        return optuna.samplers.NSGAIISampler(
            seed=seed, population_size=max(4, min(50, spec.trials // 4))
        )
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(2, spec.trials // 4)))


def _pruner(spec: SearchSpec) -> optuna.pruners.BasePruner:
    p = spec.pruner
    if p.type == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=p.min_epochs, reduction_factor=p.reduction_factor
        )
    if p.type == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=p.min_epochs,
            max_resource=max(p.min_epochs, spec.base["epochs"]),
            reduction_factor=p.reduction_factor,
        )
    if p.type == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=p.min_epochs - 1)
    return optuna.pruners.NopPruner()


def study(session: Session, search: Search, trials: list[Experiment]) -> optuna.Study:
    """The Optuna study of `search`, rebuilt from its trials (in trial-number order)."""
    spec = spec_of(search)
    s = optuna.create_study(
        study_name=f"labq-search-{search.id}",  # Hyperband's brackets hash it with the trial
        directions=[g.direction for g in spec.goals()],
        sampler=_sampler(spec, len(trials)),
        pruner=_pruner(spec),
    )
    values = objective_values(session, [t.id for t in trials], spec.objective.metric)
    multi = trial_values(session, spec, trials) if several(spec) else {}
    for exp in trials:
        t = exp.search_trial or {}
        vals = values[exp.id]
        value: float | list[float] | None = final_value(exp, vals)
        if several(spec):  # no pruner: no intermediate values
            value, vals = multi[exp.id], []
        if exp.status in (QUEUED, RUNNING):
            state = optuna.trial.TrialState.RUNNING
        elif exp.status == PRUNED:
            state = optuna.trial.TrialState.PRUNED
        elif value is not None:
            state = optuna.trial.TrialState.COMPLETE
        else:
            state = optuna.trial.TrialState.FAIL
        s.add_trial(
            optuna.trial.create_trial(
                state=state,
                values=_values(value) if state == optuna.trial.TrialState.COMPLETE else None,
                params=t["params"],
                distributions={
                    k: optuna.distributions.json_to_distribution(v)
                    for k, v in t["distributions"].items()
                },
                intermediate_values=dict(enumerate(vals, start=1)),
                system_attrs=t.get("system_attrs", {}),
            )
        )
    return s


def _values(value: float | list[float] | None) -> list[float] | None:
    return value if isinstance(value, list) else None if value is None else [value]


def _new_trials(
    session: Session, search: Search, trials: list[Experiment], n: int, token_id: int | None
) -> list[int]:
    spec = spec_of(search)
    st = study(session, search, trials)
    dists = {p: distribution(d) for p, d in spec.space.items()}
    base = spec.base
    ids: list[int] = []
    for _ in range(n):
        trial = st.ask(dists)
        frozen = st._storage.get_trial(trial._trial_id)
        number = len(trials) + len(ids)
        exp_spec = build(base, trial.params, f"{spec.name} #{number}", base["seed"])
        exp = repo.create_experiment(
            session,
            exp_spec,
            token_id=token_id,
            owner_id=search.owner_id,
            priority=search.priority,
            fuse=spec.fuse,
        )
        exp.search_id = search.id
        exp.search_trial = {
            "number": number,
            "params": trial.params,
            "distributions": {
                k: optuna.distributions.distribution_to_json(v) for k, v in dists.items()
            },
            "system_attrs": _jsonable(frozen.system_attrs),
        }
        ids.append(exp.id)
    session.flush()
    return ids


def _jsonable(attrs: dict[str, Any]) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in attrs.items()}


def create_search(
    session: Session,
    spec: SearchSpec,
    base: dict[str, Any],
    preset: str | None = None,
    *,
    owner_id: int | None = None,
    token_id: int | None = None,
    priority: int = 1,
) -> tuple[Search, list[int]]:
    """Store the search, owned by the user `owner_id` (None: the implicit local admin), and ask
    for its first `parallel` trials, charged to `token_id`'s active-job limit; flushed, not
    committed."""
    doc = spec.model_dump(mode="json")
    doc["base"] = base
    if doc["seed"] is None:
        doc["seed"] = base["seed"]
    search = Search(
        name=spec.name,
        spec=doc,
        preset=preset,
        created_at=utcnow(),
        owner_id=owner_id,
        priority=priority,
    )
    session.add(search)
    session.flush()
    return search, top_up(session, search.id, token_id=token_id)


def top_up(session: Session, search_id: int, *, token_id: int | None = None) -> list[int]:
    """Under the search's lock: ask for trials until `parallel` are in flight or `trials` were
    asked; once every trial has ended, queue the confirmation, and once that has ended, record
    the result. Returns the experiments to enqueue after the commit. Every trial is owned by the
    search's owner; `token_id` (the API's create) is charged for the trials asked now, while the
    later ones, asked as trials end, are bounded by `parallel` and charged to no token."""
    search = _lock(session, search_id)
    if search is None or search.cancelled or search.result is not None:
        return []
    spec = spec_of(search)
    exps = members(session, search_id)
    trials = [e for e in exps if is_trial(e)]
    in_flight = sum(e.status in (QUEUED, RUNNING) for e in trials)
    target = spec.trials
    if spec.sampler == "grid":
        target = min(target, _grid_size(spec))
    if spec.timeout_seconds is not None:
        if (utcnow() - search.created_at).total_seconds() >= spec.timeout_seconds:
            target = len(trials)  # time is up: the trials asked so far are the search
    n = min(spec.parallel - in_flight, target - len(trials))
    if n > 0:
        return _new_trials(session, search, trials, n, token_id)
    if in_flight or len(trials) < target:
        return []
    confirms = [e for e in exps if not is_trial(e)]
    if spec.confirm is not None and not confirms:
        ids = _queue_confirmation(session, search, trials, token_id)
        if ids:
            return ids
    if any(e.status not in FINISHED for e in confirms):
        return []
    if several(spec):
        result: dict[str, Any] = {
            "winner": None,
            "pareto_front": pareto_front(session, search, trials),
            "rule": "several objectives: every completed trial that no other completed trial "
            "matches or beats on all objectives while beating it on one (the Pareto front); no "
            "test accuracy is read",
            "test_accuracy": None,
        }
        if confirms:
            result.update(confirm_front(session, spec, confirms))
        search.result = result  # assigned whole: a JSON column does not see changes in place
        return []
    search.result = conclude(session, search, trials, confirms)
    return []


def _grid_size(spec: SearchSpec) -> int:
    return math.prod(len(grid_values(d)) for d in spec.space.values())


def ranked(
    session: Session, search: Search, trials: list[Experiment]
) -> list[tuple[Experiment, float]]:
    """Completed trials, best objective first (pruned and failed ones have none)."""
    spec = spec_of(search)
    values = objective_values(session, [t.id for t in trials], spec.objective.metric)
    done = [(t, v) for t in trials if (v := final_value(t, values[t.id])) is not None]
    return sorted(done, key=lambda tv: tv[1], reverse=spec.objective.direction == "maximize")


def _to_confirm(session: Session, search: Search, trials: list[Experiment]) -> list[Experiment]:
    """The trials the confirmation re-runs: the `confirm.top` best by the objective, or with
    several objectives the Pareto front's, best first by the first objective."""
    spec = spec_of(search)
    assert spec.confirm is not None
    if not several(spec):
        return [exp for exp, _ in ranked(session, search, trials)[: spec.confirm.top]]
    front = set(pareto_front(session, search, trials))
    values = trial_values(session, spec, trials)
    sign = 1.0 if spec.goals()[0].direction == "maximize" else -1.0
    members = [t for t in trials if (t.search_trial or {}).get("number") in front]
    members.sort(key=lambda t: -sign * (values[t.id] or [0.0])[0])
    return members[: spec.confirm.top]


def confirm_front(session: Session, spec: SearchSpec, confirms: list[Experiment]) -> dict[str, Any]:
    """Several objectives: each confirmed front point's mean ± std per objective over its new
    seeds, and the front again on those means (a point the seeds showed to be dominated leaves
    it). No test accuracy is read: there is no single winner to read it for."""
    values = trial_values(session, spec, confirms)
    by_trial: dict[int, list[list[float]]] = {}
    for c in confirms:
        vals = values[c.id]
        by_trial.setdefault((c.search_trial or {})["confirm_of"], [])
        if vals is not None:
            by_trial[(c.search_trial or {})["confirm_of"]].append(vals)
    goals = spec.goals()
    points: list[dict[str, Any]] = []
    measured: list[tuple[int, list[float]]] = []
    for number, runs in sorted(by_trial.items()):
        cols = list(zip(*runs, strict=True)) if runs else []
        means = [sum(c) / len(c) for c in cols]
        stds = [float(stats.tstd(c)) if len(c) > 1 else None for c in cols]
        points.append(
            {"trial": number, "n": len(runs), "means": means or None, "stds": stds or None}
        )
        if means:
            measured.append((number, means))
    signs = [1.0 if g.direction == "maximize" else -1.0 for g in goals]

    def dominates(a: list[float], b: list[float]) -> bool:
        pairs = [(s * x, s * y) for s, x, y in zip(signs, a, b, strict=True)]
        return all(x >= y for x, y in pairs) and any(x > y for x, y in pairs)

    front = [
        number
        for number, means in measured
        if not any(dominates(other, means) for n, other in measured if n != number)
    ]
    return {"confirmed": points, "confirmed_front": front}


def _queue_confirmation(
    session: Session, search: Search, trials: list[Experiment], token_id: int | None
) -> list[int]:
    spec = spec_of(search)
    assert spec.confirm is not None
    ids = []
    for exp in _to_confirm(session, search, trials):
        t = exp.search_trial or {}
        for i in range(spec.confirm.seeds):
            seed = (spec.base["seed"] + 1 + i) % (2**31)  # seeds the trials were not chosen on
            name = f"{spec.name} #{t['number']} confirm {i + 1}"
            confirm = repo.create_experiment(
                session,
                build(spec.base, t["params"], name, seed),
                token_id=token_id,
                owner_id=search.owner_id,
                priority=search.priority,
                fuse=spec.fuse,
            )
            confirm.search_id = search.id
            confirm.search_trial = {"confirm_of": t["number"], "seed_index": i}
            ids.append(confirm.id)
    session.flush()
    return ids


def conclude(
    session: Session, search: Search, trials: list[Experiment], confirms: list[Experiment]
) -> dict[str, Any]:
    """The winner, by the rule in docs/guarantees.md (Searches): the best hold-out mean over the
    confirmation seeds; every configuration whose difference from it is inside run-to-run noise
    (Welch's t-test, p >= ALPHA) ties with it, and the tie goes to the cheapest (fewest params).
    Then, and only then, the winner's test accuracy is read: the mean over its confirmation runs.
    Without `confirm`, the winner is the best trial and its test accuracy is its own run's."""
    spec = spec_of(search)
    sign = 1.0 if spec.objective.direction == "maximize" else -1.0
    if not confirms:
        best = ranked(session, search, trials)
        if not best:
            return {"winner": None, "reason": "no trial completed"}
        top, value = best[0]
        return {
            "winner": (top.search_trial or {})["number"],
            "value": value,
            "params": top.params,
            "test_accuracy": top.test_accuracy,
            "test_runs": [top.id],
            "rule": "best trial (no confirmation)",
            "configs": [],
        }
    values = objective_values(session, [c.id for c in confirms], spec.objective.metric)
    by_trial: dict[int, list[Experiment]] = {}
    for c in confirms:
        by_trial.setdefault((c.search_trial or {})["confirm_of"], []).append(c)
    configs: list[dict[str, Any]] = []
    for number, runs in by_trial.items():
        vals = [v for r in runs if (v := final_value(r, values[r.id])) is not None]
        mean = sum(vals) / len(vals) if vals else None
        std = float(stats.tstd(vals)) if len(vals) > 1 else None
        configs.append(
            {"trial": number, "mean": mean, "std": std, "n": len(vals), "params": runs[0].params}
        )
    measured = [c for c in configs if c["mean"] is not None]
    if not measured:
        return {"winner": None, "reason": "no confirmation run completed", "configs": configs}
    top_cfg = max(measured, key=lambda c: sign * c["mean"])
    for cfg in measured:
        cfg["p_vs_best"] = _welch(cfg, top_cfg)
        cfg["tied_with_best"] = cfg is top_cfg or (
            cfg["p_vs_best"] is not None and cfg["p_vs_best"] >= ALPHA
        )
    tied = [c for c in measured if c["tied_with_best"]]
    winner = min(tied, key=lambda c: (c["params"] or 0, -sign * c["mean"]))
    runs = [r for r in by_trial[winner["trial"]] if r.status == SUCCEEDED]
    tests = [r.test_accuracy for r in runs if r.test_accuracy is not None]
    return {
        "winner": winner["trial"],
        "value": winner["mean"],
        "params": winner["params"],
        "test_accuracy": sum(tests) / len(tests) if tests else None,
        "test_runs": [r.id for r in runs],
        "rule": "best hold-out mean over the confirmation seeds; ties within noise (Welch's "
        f"t-test, p >= {ALPHA}) go to the fewest parameters",
        "configs": configs,
    }


def _welch(a: dict[str, Any], b: dict[str, Any]) -> float | None:
    if a is b or not a["std"] or not b["std"]:
        return None if a is not b else 1.0
    p = stats.ttest_ind_from_stats(
        a["mean"], a["std"], a["n"], b["mean"], b["std"], b["n"], equal_var=False
    ).pvalue
    return float(p)


def should_prune(session: Session, experiment_id: int) -> bool:
    """The search's pruner on this trial's epochs so far (recorded in this transaction). The
    pruner's own bookkeeping (ASHA's rungs) is written back to the trial's row."""
    exp = session.get(Experiment, experiment_id)
    if exp is None or exp.search_id is None or not is_trial(exp):
        return False
    search = session.get(Search, exp.search_id)
    if search is None or spec_of(search).pruner.type == "none":
        return False
    trials = [e for e in members(session, search.id) if is_trial(e)]
    st = study(session, search, trials)
    idx = next(i for i, e in enumerate(trials) if e.id == experiment_id)
    frozen = st.get_trials(deepcopy=False)[idx]
    if frozen.last_step is None:
        return False
    prune = st.pruner.prune(st, frozen)
    attrs = _jsonable(st._storage.get_trial(frozen._trial_id).system_attrs)
    if attrs != (exp.search_trial or {}).get("system_attrs"):
        exp.search_trial = {**(exp.search_trial or {}), "system_attrs": attrs}
    return bool(prune)


def cancel_search(session: Session, search_id: int) -> None:
    """No new trial is asked; queued trials are cancelled at once, running ones at an epoch end."""
    search = _lock(session, search_id)
    if search is None:
        return
    search.cancelled = True
    for exp in members(session, search_id):
        repo.request_cancel(session, exp.id)


def get_search(session: Session, search_id: int) -> Search | None:
    return session.get(Search, search_id)


def list_searches(
    session: Session, limit: int = 50, offset: int = 0, readable: Any = None
) -> tuple[list[Search], int]:
    """`readable`: a condition on the owner the caller may read (db/users.Sight.where)."""
    query = select(Search) if readable is None else select(Search).where(readable)
    total = session.scalar(select(func.count()).select_from(query.subquery()))
    rows = session.scalars(query.order_by(Search.id.desc()).limit(limit).offset(offset))
    return list(rows), int(total or 0)


def status_counts(session: Session, search_ids: list[int]) -> dict[int, Counter[str]]:
    counts: dict[int, Counter[str]] = {i: Counter() for i in search_ids}
    if search_ids:
        rows = session.execute(
            select(Experiment.search_id, Experiment.status, func.count())
            .where(Experiment.search_id.in_(search_ids))
            .group_by(Experiment.search_id, Experiment.status)
        )
        for sid, status, n in rows:
            if sid is not None:
                counts[sid][status] = n
    return counts


__all__ = ["CANCELLED", "FAILED", "create_search", "top_up", "should_prune", "cancel_search"]
