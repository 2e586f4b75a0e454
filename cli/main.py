"""`labq`: run the stack (up, down, ps, api, worker, migrate), look after its data (repair, backup,
restore) and talk to it (submit, status, watch, ls, pull)."""

import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cli import bench as bench_cli
from cli import gc as gc_cli
from cli import lab as lab_cli
from cli import lifecycle, maintenance
from cli import models as models_cli
from cli import searches as searches_cli
from cli import sweeps as sweeps_cli
from cli import tokens as tokens_cli
from cli import users as users_cli
from cli.client import Priority, call, delete, read_json
from core import privacy
from core.constants import FINISHED
from core.settings import get_settings

app = typer.Typer(help="labq: a job queue for Keras experiments.", no_args_is_help=True)
app.add_typer(sweeps_cli.app, name="sweep")
app.add_typer(searches_cli.app, name="search")
app.add_typer(lab_cli.app, name="lab")
app.add_typer(tokens_cli.app, name="token")
app.add_typer(users_cli.app, name="user")
app.command("bench")(bench_cli.bench)
app.command()(lifecycle.up)
app.command()(lifecycle.down)
app.command()(lifecycle.ps)
app.command()(maintenance.repair)
app.command()(maintenance.backup)
app.command()(maintenance.restore)
app.command("pull")(models_cli.pull)
app.command()(gc_cli.gc)
console = Console()


@app.command()
def api():
    """Run the API server (uvicorn) alone."""
    import uvicorn

    privacy.private_umask()
    settings = get_settings()
    tokens_cli.refuse_open_bind(settings)
    uvicorn.run("api.main:app", host=settings.host, port=settings.port, log_level="info")


@app.command()
def worker(
    gpu: Annotated[int | None, typer.Option(help="pin this worker to GPU N")] = None,
    concurrency: Annotated[int, typer.Option(help="pool processes")] = 1,
    backend: Annotated[
        str | None,
        typer.Option(help="Keras backend: tensorflow or jax (default: LABQ_BACKEND)"),
    ] = None,
):
    """Run a Celery worker (one per GPU; Keras and its backend are imported in its child processes
    only)."""
    privacy.private_umask()
    if backend is not None:
        if backend not in ("tensorflow", "jax"):
            typer.secho("--backend: tensorflow or jax", fg="red", err=True)
            raise typer.Exit(2)
        os.environ["LABQ_BACKEND"] = backend  # read by the pool children (worker.runtime)
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
    from worker.celery_app import app as celery_app

    # A node name per process (`labq-<pid>@host`): two workers on one host are told apart by
    # /health, `celery inspect` and Flower.
    name = f"labq-gpu{gpu}-{os.getpid()}" if gpu is not None else f"labq-{os.getpid()}"
    celery_app.worker_main(
        [
            "worker",
            "--loglevel",
            "INFO",
            "--concurrency",
            str(concurrency),
            "--pool",
            "prefork",
            "-Q",
            "labq",
            "-n",
            f"{name}@%h",
        ]
    )


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def flower(
    ctx: typer.Context,
    address: Annotated[str, typer.Option(help="bind address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 5555,
):
    """Celery's own monitor (Flower) on labq's broker; further options go to Flower."""
    try:
        import flower as _flower  # noqa: F401
    except ImportError:
        typer.secho("Flower is not installed: pip install 'labq[monitor]'", fg="red", err=True)
        raise typer.Exit(1) from None
    from api.auth import is_loopback

    guarded = any(a.startswith(("--basic-auth", "--auth")) for a in ctx.args) or any(
        os.environ.get(v) for v in ("FLOWER_BASIC_AUTH", "FLOWER_AUTH")
    )
    if not is_loopback(address) and not guarded:
        typer.secho(
            f"refusing to serve Flower on {address} without --basic-auth=USER:PASSWORD (or "
            "FLOWER_BASIC_AUTH) or --auth: "
            "it would show every job and let anyone stop workers",
            fg="red",
            err=True,
        )
        raise typer.Exit(2)
    argv = [sys.executable, "-m", "celery", "--app", "worker.celery_app", "flower"]
    os.execv(sys.executable, [*argv, f"--address={address}", f"--port={port}", *ctx.args])


migrate_app = typer.Typer(help="Database migrations (Alembic).")
app.add_typer(migrate_app, name="migrate")


@migrate_app.callback(invoke_without_command=True)
def migrate(ctx: typer.Context):
    """Apply database migrations (waits for the database to accept connections)."""
    if ctx.invoked_subcommand is not None:
        return
    from db.migrate import upgrade

    privacy.private_umask()

    upgrade()
    console.print("database is at the latest migration")


@migrate_app.command("new")
def migrate_new(message: Annotated[str, typer.Argument(help="what the schema change does")]):
    """Write the next migration from the models (edit db/models.py first), for review."""
    from db.migrate import new_revision

    path = new_revision(message)
    console.print(f"wrote {path}; read it, adjust it, and commit it")


@app.command()
def submit(
    spec_file: Annotated[Path, typer.Argument(exists=True, readable=True)],
    priority: Priority = "normal",
):
    """Submit an experiment spec (a JSON file)."""
    spec = read_json(spec_file)
    body = call("POST", "/experiments", json=spec, params={"priority": priority}).json()
    console.print(f"experiment {body['id']} {body['status']}  {body['url']}")
    if body.get("warning"):
        console.print(f"[yellow]{body['warning']}")


def _fmt(v, spec=".4f"):
    return "-" if v is None else format(v, spec)


@app.command()
def status(experiment_id: int):
    """Show an experiment: status, timings, metrics, layer shapes."""
    e = call("GET", f"/experiments/{experiment_id}").json()
    console.print(f"[bold]#{e['id']} {e['name']}[/]  {e['architecture']}  \\[{e['status']}]")
    console.print(
        f"epochs {e['epochs_done']}/{e['epochs_total']}  queue {_fmt(e['queue_seconds'], '.2f')}s"
        f"  build {_fmt(e['build_seconds'], '.2f')}s  train {_fmt(e['train_seconds'], '.2f')}s"
    )
    for split in ("train", "val", "test"):
        m = e[split]
        console.print(f"{split:>5}: accuracy {_fmt(m['accuracy'])}  loss {_fmt(m['loss'])}")
    if e["layers"]:
        t = Table("layer", "kernel", "bias", "params")
        for lyr in e["layers"]:
            t.add_row(
                lyr["name"],
                str(lyr["kernel_shape"] or "-"),
                str(lyr["bias_shape"] or "-"),
                str(lyr["params"]),
            )
        console.print(t)
    if e["error"]:
        console.print(f"[red]error: {e['error']}")


@app.command()
def watch(experiment_id: int, interval: float = 0.5):
    """Follow an experiment with a progress bar per epoch, then print its final line."""
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[metrics]}"),
        TimeElapsedColumn(),
    ]
    with Progress(*columns, console=console) as progress:
        task = None
        while True:
            e = call("GET", f"/experiments/{experiment_id}").json()
            metrics = (
                f"val_acc {_fmt(e['val']['accuracy'])}" if e["val"]["accuracy"] else e["status"]
            )
            if task is None:
                task = progress.add_task(
                    f"#{e['id']} {e['name']}", total=e["epochs_total"], metrics=metrics
                )
            progress.update(task, completed=e["epochs_done"], metrics=metrics)
            if e["status"] in FINISHED:
                break
            time.sleep(interval)
    console.print(
        f"#{e['id']} {e['status']}: val_accuracy {_fmt(e['val']['accuracy'])} "
        f"test_accuracy {_fmt(e['test']['accuracy'])} in {_fmt(e['train_seconds'], '.1f')}s"
        + (f"  error: {e['error']}" if e["error"] else "")
    )
    if e["status"] != "succeeded":
        raise typer.Exit(1)


@app.command("ls")
def ls(
    status: str | None = None,
    name: str | None = None,
    owner: Annotated[str | None, typer.Option(help="`me` or a user's name")] = None,
    limit: int = 20,
):
    """List experiments, newest first."""
    wanted = {"status": status, "name": name, "owner": owner, "limit": limit}
    params = {k: v for k, v in wanted.items() if v}
    page = call("GET", "/experiments", params=params).json()
    t = Table("id", "name", "owner", "architecture", "status", "epochs", "val_acc", "train s")
    for e in page["items"]:
        t.add_row(
            str(e["id"]),
            e["name"],
            e["owner"],
            e["architecture"],
            e["status"],
            f"{e['epochs_done']}/{e['epochs_total']}",
            _fmt(e["val_accuracy"]),
            _fmt(e["train_seconds"], ".1f"),
        )
    console.print(t)
    console.print(f"{len(page['items'])} of {page['total']}")


@app.command()
def cancel(experiment_id: int):
    """Cancel an experiment (queued: never runs; running: stops at the end of the epoch)."""
    e = call("POST", f"/experiments/{experiment_id}/cancel").json()
    console.print(
        f"#{e['id']} {e['status']}" + (" (cancel requested)" if e["cancel_requested"] else "")
    )


@app.command()
def rm(experiment_id: int):
    """Delete a run with its epochs, artifacts and checkpoints (queued or training: it stops). A
    run of a sweep or search goes with it: `labq sweep rm`, `labq search rm`."""
    delete(f"experiment {experiment_id}", f"/experiments/{experiment_id}")


@app.command()
def audit(
    user: Annotated[str | None, typer.Option(help="only this user's writes")] = None,
    limit: int = 50,
):
    """The audit log of writes, newest first (admins: send an admin's token as LABQ_TOKEN)."""
    params: dict[str, str | int] = {"limit": limit, **({"user": user} if user else {})}
    resp = call("GET", "/audit", params=params)
    t = Table("when", "who", "action", "target", "from")
    for e in resp.json():
        t.add_row(e["at"][:19].replace("T", " "), e["actor"], e["action"], e["target"], e["source"])
    console.print(t)
    console.print(f"{len(resp.json())} of {resp.headers.get('X-Total-Count', '?')}")


if __name__ == "__main__":
    sys.exit(app())
