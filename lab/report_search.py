"""Section 12's search beside its grid in the lab report (`labq lab run --search` queues both).

From the API only, as the rest of the report: the newest search of a section-12 search preset
(`GET /searches`, then `GET /searches/{id}`), its winner's test runs (`GET /experiments/{id}`),
and the grid's configurations as the section already fetched them. The search chose its winner
on the hold-out and read the test set once per confirmation seed; the grid's test accuracies are
those of its own runs. Differences are tested as everywhere in the report (Welch's t-test).
Then every trial in a table, and the search's figures (`GET /searches/{id}/progress.png`,
`parallel.png`, `importance.png`) saved beside the section's.
"""

from pathlib import Path
from typing import Any

from lab.report_stats import Stat, compare, num

SECTION = 12
FIGURES = {  # GET /searches/{id}/<name>, what it shows
    "progress.png": "the objective of every trial in the order they ended, pruned ones marked, "
    "the best so far",
    "parallel.png": "parallel coordinates: one axis per parameter, the objective last",
    "importance.png": "which parameters mattered (Optuna's importance over completed trials)",
}


def latest_search(api, presets: list[dict]) -> dict | None:
    """The newest search started from a section-12 search preset, in full; None if there is none."""
    names = {p["name"] for p in presets if p["section"] == SECTION and p.get("kind") == "search"}
    for summary in api.json("/searches", limit=500):  # newest first
        if summary["name"] in names:
            return api.json(f"/searches/{summary['id']}")
    return None


def _seconds(runs: list[dict]) -> float:
    return sum(r.get("train_seconds") or 0.0 for r in runs)


def search_markdown(api, search: dict, grid: Any | None) -> list[str]:
    """Markdown lines for the search against the grid (`grid`: the section's report.Section)."""
    counts = ", ".join(f"{n} {k}" for k, n in sorted(search["counts"].items()))
    trials, confirm = search["trials"], search["confirmation"]
    lines = [
        "### The search against the grid",
        "",
        f"Search #{search['id']} (`{search['name']}`), {search['status']}: {len(trials)} "
        f"trial(s) ({counts or 'none ended'}), {len(confirm)} confirmation run(s).",
        "",
    ]
    result = search.get("result")
    if not result:
        return [*lines, "No result yet: the search has not finished its confirmation.", ""]
    tests = [api.json(f"/experiments/{i}") for i in result["test_runs"]]
    accs = [t["test"]["accuracy"] for t in tests if t["test"]["accuracy"] is not None]
    won = Stat.of(accs)
    winner = next((t for t in trials if t["number"] == result["winner"]), None)
    search_s = _seconds(trials) + _seconds(confirm)
    lines += [
        f"The winner, trial {result['winner']} ({num(result['params'], ',.0f')} parameters), was "
        f"chosen by the rule *{result['rule']}* on the hold-out "
        f"({Stat(result['value'], None, 1).pct()} mean), then its test set was read once per "
        f"confirmation seed: **{won.pct()}** over {won.n} run(s).",
        "",
    ]
    if winner is not None:
        params = "; ".join(f"{k} = {_short(v)}" for k, v in winner["params"].items())
        lines += [f"Its parameters: {params}.", ""]
    lines += ["| | test accuracy | runs | training seconds |", "|---|---|---|---|"]
    lines.append(
        f"| search #{search['id']}, its winner | {won.pct()} | {won.n} | "
        f"{search_s:,.1f} in all (trials and confirmation) |"
    )
    if grid is None:
        return [*lines, "", "No grid of this section to compare with (`labq lab run`).", ""]
    grid_s = _seconds(grid.sweep["children"])
    findings = []
    for config in grid.configs:
        acc = grid.stat(config, "test_accuracy")
        lines.append(
            f"| grid #{grid.sweep['id']}: {config['label']} | {acc.pct()} | {acc.n} | "
            f"{grid.stat(config, 'train_seconds').fmt('.1f')} per run |"
        )
        _, text = compare(won, acc)
        findings.append(f"- Search winner against {config['label']}: {text}.")
    ratio = f"{search_s / grid_s:.1f}x" if grid_s else "-"
    return [
        *lines,
        "",
        *findings,
        f"- Cost: the search trained {search_s:,.1f} s in all, the grid {grid_s:,.1f} s "
        f"({ratio} the grid's).",
        "",
    ]


def _short(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def trial_table(search: dict) -> list[str]:
    """Markdown lines: every trial (number, status, epochs, objective on the hold-out, training
    seconds, its parameters), the winner starred."""
    metric = search["objective"]["metric"]
    paths = list(search["spec"]["space"])
    winner = (search.get("result") or {}).get("winner")
    lines = [
        "#### Every trial",
        "",
        f"| # | status | epochs | {metric} (hold-out) | training s | {' | '.join(paths)} |",
        "|" + "---|" * (5 + len(paths)),
    ]
    for t in sorted(search["trials"], key=lambda t: t["number"]):
        star = " ★" if t["number"] == winner else ""
        value = "-" if t["value"] is None else f"{t['value']:.4f}"
        seconds = "-" if t["train_seconds"] is None else f"{t['train_seconds']:.1f}"
        params = " | ".join(_short(t["params"].get(p, "-")) for p in paths)
        lines.append(
            f"| {t['number']}{star} | {t['status']} | {t['epochs_done']}/{t['epochs_total']} | "
            f"{value} | {seconds} | {params} |"
        )
    return [*lines, ""]


def search_figures(api, search: dict, out: Path, rel: str) -> list[str]:
    """Markdown lines for the search's figures, saved under `out` (`rel` from the report): those
    the API has drawn (each is a 409 until there is something to draw)."""
    lines = []
    for name, what in FIGURES.items():
        file = f"search-{search['id']}-{name}"
        if api.png(f"/searches/{search['id']}/{name}", out / file):
            lines += [f"![{what}]({rel}/{file})", ""]
    return ["#### Figures", "", *lines] if lines else []
