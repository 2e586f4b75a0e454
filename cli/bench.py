"""`labq bench`: how fast labq trains next to the notebook's own code, and what the service adds.

Without --service it trains a fixed set of specs two ways in one process (bench.training,
imported here lazily: the CLI's other commands never load TensorFlow). With --service it starts a
throw-away embedded stack and measures pickup latency, the API under load and queue throughput
(bench.service).
"""

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

console = Console(width=None if sys.stdout.isatty() else 160)  # wide table in logs too

CASE_NAMES = ["b128", "lab12", "b1", "b10000"]


def _train_table(report: dict) -> Table:
    t = Table(
        title=f"notebook model.fit vs labq engine on {report['device']}, "
        f"Keras on {report.get('backend', 'tensorflow')} "
        f"(matmul {report['matmul_gflops']:.0f} GFLOP/s, jit={report['jit']})"
    )
    for col in (
        "case",
        "seed",
        "model",
        "batch",
        "epochs",
        "notebook s",
        "labq s",
        "speed-up",
        "nb val_acc",
        "labq val_acc",
        "floor s",
        "labq/floor",
        "xla",
    ):
        t.add_column(col, justify="left" if col in ("case", "model") else "right")
    for r in report["rows"]:
        t.add_row(
            r["case"],
            str(r["seed"]),
            r["architecture"],
            str(r["batch_size"]),
            str(r["epochs"]),
            f"{r['notebook_seconds']:.2f}",
            f"{r['engine_seconds']:.2f}",
            f"{r['speedup']:.2f}x",
            f"{r['notebook_val_accuracy']:.4f}",
            f"{r['engine_val_accuracy']:.4f}",
            f"{r['floor_seconds']:.2f}",
            f"{r['engine_over_floor']:.1f}x",
            "on" if r["jit"] else "off",
        )
    return t


def bench(
    quick: Annotated[
        bool, typer.Option(help="small cases (a smoke run well under a minute)")
    ] = False,
    cases: Annotated[str, typer.Option(help="comma-separated: b128, lab12, b1, b10000")] = ",".join(
        CASE_NAMES
    ),
    seeds: Annotated[
        str, typer.Option(help="comma-separated seeds; each case runs once per seed")
    ] = "1",
    gpu: Annotated[
        bool, typer.Option(help="train on GPU 0 (both ways); fails if there is none")
    ] = False,
    jit: Annotated[str, typer.Option(help="engine XLA: auto (labq's rule), on or off")] = "auto",
    backend: Annotated[
        str | None,
        typer.Option(help="Keras backend: tensorflow, jax or both (default: LABQ_BACKEND)"),
    ] = None,
    notebook: Annotated[
        bool,
        typer.Option(help="also train each case the notebook's way (--no-notebook: labq only)"),
    ] = True,
    pairs: Annotated[
        int,
        typer.Option(
            help="run each case N times per backend, backends alternating, each run a fresh "
            "process; report median and range (seeds 1..N; --seeds is ignored)"
        ),
    ] = 1,
    service: Annotated[
        bool,
        typer.Option(
            "--service",
            "--api",
            help="measure the service instead: pickup latency, API under load, queue throughput",
        ),
    ] = False,
    fused: Annotated[
        bool,
        typer.Option(
            "--fused",
            help="measure fused trials instead: 8 small trials as one sweep on a JAX worker "
            "against the same 8 one by one on TensorFlow and on JAX, in --pairs alternating pairs",
        ),
    ] = False,
    lab: Annotated[
        bool,
        typer.Option(
            "--lab",
            help="measure the whole lab instead (what `labq lab run` queues), wall time on a "
            "fresh stack per way: --ways before,tensorflow,jax",
        ),
    ] = False,
    tiny: Annotated[
        bool,
        typer.Option(
            "--tiny",
            help="measure tiny jobs/s through one worker process instead, this checkout against "
            "--before REV, in --pairs alternating pairs of fresh stacks",
        ),
    ] = False,
    ways: Annotated[
        str, typer.Option(help="--lab: comma-separated: before, tensorflow, jax")
    ] = "before,tensorflow,jax",
    before: Annotated[
        str, typer.Option(help="--lab, --tiny: the git revision the 'before' way runs")
    ] = "abdc22a",
    clients: Annotated[
        int, typer.Option(help="--service: concurrent polling clients (0: skip)")
    ] = 200,
    duration: Annotated[float, typer.Option(help="--service: seconds of polling load")] = 30.0,
    jobs: Annotated[
        int,
        typer.Option(
            help="--service: tiny jobs for the throughput test, "
            "run with 1 then 2 worker processes (0: skip)"
        ),
    ] = 1000,
    pickups: Annotated[
        int,
        typer.Option(help="--service: tiny jobs timed one by one for the pickup latency (0: skip)"),
    ] = 20,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="also write the figures here")
    ] = None,
):
    """Benchmark labq's training against the notebook's Keras code (or, with --service, the service)."""
    if tiny:
        from bench import tiny_pairs
        from core.settings import Settings

        one_backend = backend or Settings().backend
        if one_backend not in ("tensorflow", "jax"):
            console.print("[red]--tiny: --backend tensorflow or jax")
            raise typer.Exit(2)
        report = tiny_pairs.run(
            before, max(1, pairs), max(1, min(jobs, 5000)), one_backend, log=console.print
        )
        for line in tiny_pairs.summary(report):
            console.print(line)
    elif lab:
        from bench import lab_wall

        chosen_ways = tuple(w.strip() for w in ways.split(",") if w.strip())
        unknown = [w for w in chosen_ways if w not in lab_wall.WAYS]
        if unknown or not chosen_ways:
            console.print(f"[red]--ways: unknown way(s) {unknown}; choose from {lab_wall.WAYS}")
            raise typer.Exit(2)
        report = lab_wall.run(chosen_ways, before, log=console.print)
        for line in lab_wall.summary(report):
            console.print(line)
    elif fused:
        from bench.fused import run, summary

        chosen = backend or "both"
        if chosen not in ("jax", "both"):
            console.print("[red]--fused: --backend jax (JAX ways only) or both")
            raise typer.Exit(2)
        backends = ("jax",) if chosen == "jax" else ("tensorflow", "jax")
        report = run(pairs if pairs > 1 else 3, backends, gpu, log=console.print)
        for line in summary(report):
            console.print(line)
    elif service:
        import os

        from bench.service import run_service, service_tables
        from core.settings import Settings

        chosen = backend or Settings().backend
        if chosen not in ("tensorflow", "jax", "both"):
            console.print("[red]--backend: tensorflow, jax or both")
            raise typer.Exit(2)
        reports = {}
        for one in ["tensorflow", "jax"] if chosen == "both" else [chosen]:
            os.environ["LABQ_BACKEND"] = one  # the stack's workers train with it
            console.print(f"[bold]backend: {one}")
            reports[one] = run_service(
                clients=max(0, min(clients, 1000)),
                duration=max(1.0, min(duration, 600.0)),
                jobs=max(0, min(jobs, 5000)),
                pickups=max(0, min(pickups, 1000)),
                log=console.print,
            )
            for table in service_tables(reports[one]):
                table.title = f"{table.title} [{one}]"
                console.print(table)
        report = reports if len(reports) > 1 else reports[chosen]
    else:
        import os

        names = [c.strip() for c in cases.split(",") if c.strip()]
        unknown = [c for c in names if c not in CASE_NAMES]
        if unknown or not names:
            console.print(f"[red]--cases: unknown case(s) {unknown}; choose from {CASE_NAMES}")
            raise typer.Exit(2)
        try:
            seed_list = [int(s) for s in seeds.split(",") if s.strip()]
        except ValueError:
            console.print("[red]--seeds: comma-separated integers")
            raise typer.Exit(2) from None
        if jit not in ("auto", "on", "off"):
            console.print("[red]--jit: auto, on or off")
            raise typer.Exit(2)
        os.environ["LABQ_JIT"] = jit
        from core.settings import Settings

        chosen = backend or Settings().backend
        if chosen not in ("tensorflow", "jax", "both"):
            console.print("[red]--backend: tensorflow, jax or both")
            raise typer.Exit(2)
        backends = ["tensorflow", "jax"] if chosen == "both" else [chosen]
        if pairs > 1 or len(backends) > 1:
            from bench.pairs import pairs_table, run_pairs

            try:
                report = run_pairs(
                    backends, names, max(1, pairs), quick, gpu, notebook, log=console.print
                )
            except RuntimeError as exc:
                console.print(f"[red]{exc}")
                raise typer.Exit(1) from None
            console.print(pairs_table(report))
            if json_out:
                json_out.write_text(json.dumps(report, indent=2))
                console.print(f"figures written to {json_out}")
            return
        os.environ["KERAS_BACKEND"] = chosen  # before bench.training imports Keras
        from bench.training import run

        def progress(row) -> None:
            console.print(
                f"{row.case} seed {row.seed}: notebook {row.notebook_seconds:.2f}s, "
                f"labq {row.engine_seconds:.2f}s ({row.speedup:.2f}x)"
            )

        try:
            report = run(names, seed_list or [1], quick, gpu, on_row=progress, notebook=notebook)
        except RuntimeError as exc:
            console.print(f"[red]{exc}")
            raise typer.Exit(1) from None
        console.print(_train_table(report))
    if json_out:
        json_out.write_text(json.dumps(report, indent=2))
        console.print(f"figures written to {json_out}")
