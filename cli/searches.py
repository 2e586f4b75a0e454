"""`labq search`: submit a search spec (`labq search spec.json [--watch]`), list, show, cancel."""

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from cli.client import FileOrCommand, Priority, call, delete, read_json
from core.stats import num, plus_minus

console = Console()


app = typer.Typer(
    cls=FileOrCommand,
    no_args_is_help=True,
    help="Searches: Optuna picks the trials, its pruner stops weak ones, a confirmation decides.",
)


def _params(p: dict[str, Any]) -> str:
    return " ".join(
        f"{k.split('.')[-1]}={v:.3g}" if isinstance(v, float) else f"{k.split('.')[-1]}={v}"
        for k, v in p.items()
    )


def table(s: dict) -> Group:
    """The search as a live table: trial, params, epochs, value, status, best so far."""
    obj = s["objective"]
    head = (
        f"[bold]search #{s['id']} {s['name']}[/]  [{s['status']}]  trials "
        f"{s['trials_asked']}/{s['trials_target']}  {obj['direction']} {obj['metric']}"
    )
    t = Table("trial", "run", "params", "epochs", obj["metric"], "status", "best so far")
    best: float | None = None
    maximize = obj["direction"] == "maximize"
    for r in s["trials"]:
        if r["status"] == "succeeded" and r["value"] is not None:
            v = r["value"]
            best = v if best is None else (max if maximize else min)(best, v)
        t.add_row(
            str(r["number"]),
            str(r["id"]),
            _params(r["params"]),
            f"{r['epochs_done']}/{r['epochs_total']}",
            num(r["value"]),
            r["status"],
            num(best),
        )
    parts: list[Any] = [head, t]
    if s["confirmation"]:
        c = Table("confirms trial", "run", "epochs", obj["metric"], "status")
        for r in s["confirmation"]:
            c.add_row(
                str(r["confirm_of"]),
                str(r["id"]),
                f"{r['epochs_done']}/{r['epochs_total']}",
                num(r["value"]),
                r["status"],
            )
        parts.append(c)
    res = s.get("result")
    if s.get("pareto_front") is not None:  # several objectives: `value` is the first's
        metrics = " / ".join(o["metric"] for o in s["objectives"])
        front = {r["number"]: r for r in s["trials"] if r["number"] in s["pareto_front"]}
        line = ", ".join(
            f"#{n} ({' / '.join(num(v, '.4g') for v in r['values'] or [])})"
            for n, r in front.items()
        )
        parts.append(f"[bold]Pareto front[/] ({metrics}): {line or 'none yet'}")
        if res:
            parts.append(f"rule: {res.get('rule', '')}")
        return Group(*parts)
    if res:
        rows = Table("trial", "params", f"{obj['metric']} (confirmation)", "p vs best", "tied")
        for cfg in res.get("configs", []):
            rows.add_row(
                str(cfg["trial"]),
                num(cfg["params"], ".0f"),
                plus_minus(cfg["mean"], cfg["std"]),
                num(cfg.get("p_vs_best"), ".3f"),
                "yes" if cfg.get("tied_with_best") else "no",
            )
        if res.get("configs"):
            parts.append(rows)
        parts.append(
            f"[bold]winner: trial {res.get('winner')}[/]  {obj['metric']} {num(res.get('value'))}"
            f"  test accuracy (read once) {num(res.get('test_accuracy'))}\n"
            f"rule: {res.get('rule', res.get('reason', ''))}"
        )
    return Group(*parts)


def _done(s: dict) -> bool:
    return s["status"] in ("done", "cancelled")


@app.command()
def submit(
    spec_file: Annotated[Path, typer.Argument(exists=True, readable=True)],
    watch: Annotated[bool, typer.Option(help="follow it with a live table")] = False,
    interval: Annotated[float, typer.Option(help="seconds between refreshes")] = 1.0,
    priority: Priority = "normal",
):
    """Submit a search spec (JSON: name, base, space, objective, sampler, pruner, trials,
    parallel, confirm)."""
    spec = read_json(spec_file)
    body = call("POST", "/searches", json=spec, params={"priority": priority}).json()
    console.print(f"search {body['id']} queued: {len(body['trials'])} trial(s)  {body['url']}")
    if body.get("warning"):
        console.print(f"[yellow]{body['warning']}")
    if watch:
        follow(body["id"], interval)


def follow(search_id: int, interval: float = 1.0) -> dict:
    """A live table of the search until it is done or cancelled; returns its last state."""
    s = call("GET", f"/searches/{search_id}").json()
    with Live(table(s), console=console, refresh_per_second=4) as live:
        while not _done(s):
            time.sleep(interval)
            s = call("GET", f"/searches/{search_id}").json()
            live.update(table(s))
    return s


@app.command("ls")
def ls(limit: int = 20):
    """List searches, newest first."""
    t = Table("id", "name", "status", "trials", "runs", "best", "created")
    for s in call("GET", "/searches", params={"limit": limit}).json():
        counts = ", ".join(f"{n} {st}" for st, n in sorted(s["counts"].items()))
        t.add_row(
            str(s["id"]),
            s["name"],
            s["status"],
            f"{s['trials_asked']}/{s['trials_target']}",
            counts,
            num(s["best_value"]),
            s["created_at"][:19],
        )
    console.print(t)


@app.command()
def show(search_id: int):
    """A search's trials, confirmation runs and result."""
    console.print(table(call("GET", f"/searches/{search_id}").json()))


@app.command()
def cancel(search_id: int):
    """Ask no new trial; cancel queued trials, stop running ones at their next epoch end."""
    s = call("POST", f"/searches/{search_id}/cancel").json()
    console.print(f"search {s['id']}: {s['status']}")


@app.command()
def rm(search_id: int):
    """Delete a search with all its trials and confirmation runs (those queued or training stop)."""
    delete(f"search {search_id}", f"/searches/{search_id}")
