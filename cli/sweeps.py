"""`labq sweep`: submit a sweep spec (`labq sweep spec.json`), list sweeps, show one, cancel one."""

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cli.client import FileOrCommand, Priority, call, delete, read_json
from core.constants import FINISHED
from core.stats import num, plus_minus

console = Console()


app = typer.Typer(
    cls=FileOrCommand,
    no_args_is_help=True,
    help="Sweeps: a base spec, a grid of dotted paths, repeats with seeds.",
)


def fmt(v, spec=".4f") -> str:
    return num(v, spec)


def pm(stat: dict, spec=".4f") -> str:
    """`mean ± std` (std only with two or more finished repeats)."""
    return plus_minus(stat["mean"], stat["std"], spec)


def follow(sweep_ids: list[int], interval: float = 1.0) -> list[dict]:
    """A progress bar per sweep (epochs done of epochs asked) until every child has finished."""
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[state]}"),
        TimeElapsedColumn(),
    ]
    tasks: dict[int, int] = {}
    with Progress(*columns, console=console) as progress:
        while True:
            sweeps = [call("GET", f"/sweeps/{i}").json() for i in sweep_ids]
            for s in sweeps:
                done = sum(n for st, n in s["counts"].items() if st in FINISHED)
                state = f"runs {done}/{s['children_total']}  {s['status']}"
                if s["id"] not in tasks:
                    tasks[s["id"]] = progress.add_task(
                        f"#{s['id']} {s['name']}", total=s["epochs_total"], state=state
                    )
                # A run stopped early (early stopping, cancel, divergence) counts as complete.
                epochs = sum(
                    c["epochs_total"] if c["status"] in FINISHED else c["epochs_done"]
                    for c in s["children"]
                )
                progress.update(tasks[s["id"]], completed=epochs, state=state)
            if all(s["status"] == "finished" for s in sweeps):
                return sweeps
            time.sleep(interval)


@app.command()
def submit(
    spec_file: Annotated[Path, typer.Argument(exists=True, readable=True)],
    watch: Annotated[bool, typer.Option(help="follow it with a progress bar")] = False,
    priority: Priority = "normal",
):
    """Submit a sweep spec (JSON: name, base spec, grid of dotted path -> list of values,
    repeats)."""
    spec = read_json(spec_file)
    body = call("POST", "/sweeps", json=spec, params={"priority": priority}).json()
    console.print(
        f"sweep {body['id']} queued: {len(body['children'])} experiment(s)  {body['url']}"
    )
    if body.get("warning"):
        console.print(f"[yellow]{body['warning']}")
    if watch:
        follow([body["id"]])
        show(body["id"])


@app.command("ls")
def ls(preset: str | None = None, limit: int = 20):
    """List sweeps, newest first."""
    params = {k: v for k, v in {"preset": preset, "limit": limit}.items() if v}
    t = Table("id", "name", "preset", "repeats", "status", "runs", "created")
    for s in call("GET", "/sweeps", params=params).json():
        counts = ", ".join(f"{n} {st}" for st, n in sorted(s["counts"].items()))
        t.add_row(
            str(s["id"]),
            s["name"],
            s["preset"] or "-",
            str(s["repeats"]),
            s["status"],
            counts,
            s["created_at"][:19],
        )
    console.print(t)


@app.command()
def show(sweep_id: int):
    """A sweep's configurations (mean ± std over repeats) and its runs."""
    s = call("GET", f"/sweeps/{sweep_id}").json()
    console.print(
        f"[bold]sweep #{s['id']} {s['name']}[/]  [{s['status']}]  repeats {s['repeats']}"
        f"  epochs {s['epochs_done']}/{s['epochs_total']}"
    )
    t = Table(
        "configuration",
        "done",
        "final val acc",
        "best val acc",
        "val loss",
        "train acc",
        "test acc",
        "train s",
        "epochs",
        "params",
    )
    for c in s["configs"]:
        st = c["stats"]
        t.add_row(
            c["label"],
            f"{c['succeeded']}/{len(c['children'])}",
            pm(st["final_val_accuracy"]),
            pm(st["best_val_accuracy"]),
            pm(st["final_val_loss"]),
            pm(st["train_accuracy"]),
            pm(st["test_accuracy"]),
            pm(st["train_seconds"], ".1f"),
            pm(st["epochs_run"], ".1f"),
            fmt(st["params"]["mean"], ".0f"),
        )
    console.print(t)
    runs = Table(
        "id", "configuration", "seed", "status", "epochs", "val acc", "test acc", "train s"
    )
    for c in s["children"]:
        runs.add_row(
            str(c["id"]),
            c["label"],
            str(c["seed"]),
            c["status"] + (" (diverged)" if c["diverged"] else ""),
            f"{c['epochs_done']}/{c['epochs_total']}",
            fmt(c["final_val_accuracy"]),
            fmt(c["test_accuracy"]),
            fmt(c["train_seconds"], ".1f"),
        )
    console.print(runs)
    console.print(f"figures: {s['links']['compare_png']}  table: {s['links']['results_csv']}")


@app.command()
def cancel(sweep_id: int):
    """Cancel every run of a sweep (queued: never runs; running: stops at the epoch end)."""
    s = call("POST", f"/sweeps/{sweep_id}/cancel").json()
    console.print(f"sweep #{s['id']}: " + ", ".join(f"{n} {st}" for st, n in s["counts"].items()))


@app.command()
def rm(sweep_id: int):
    """Delete a sweep with all its runs (those queued or training stop)."""
    delete(f"sweep {sweep_id}", f"/sweeps/{sweep_id}")
