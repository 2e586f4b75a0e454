"""`labq lab`: run the lab's sections as sweeps and write the report."""

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from cli.client import base_url, call
from cli.sweeps import follow
from core.settings import get_settings

app = typer.Typer(
    no_args_is_help=True, help="The MNIST lab: its sections as presets, and a report."
)
console = Console()

RUNNABLE = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12)


def parse_sections(text: str | None) -> list[int]:
    if not text:
        return list(RUNNABLE)
    try:
        wanted = sorted({int(p) for p in text.split(",") if p.strip()})
    except ValueError:
        raise typer.BadParameter(f"{text!r}: expected section numbers such as 1,3,12") from None
    bad = [n for n in wanted if n not in range(1, 13)]
    if bad:
        raise typer.BadParameter(f"no section {bad[0]}: the lab has sections 1 to 12")
    return wanted


def preset_for(presets: list[dict], section: int, batch1: str) -> dict | None:
    options = [p for p in presets if p["section"] == section and p.get("kind") == "sweep"]
    if section == 7:
        options = [p for p in options if p["faithful"] == (batch1 == "full")]
    return options[0] if options else None


def scaled(preset: dict, number: int, overrides: dict) -> dict:
    """The overrides for one preset: with --train-samples at or under the preset's hold-out, the
    hold-out scaled to a tenth of them."""
    out = dict(overrides)
    n = overrides.get("train_samples") or 0
    holdout = (preset.get("base") or {}).get("validation") if n else None
    if isinstance(holdout, dict) and holdout.get("holdout", 0) >= n > 1:
        out["validation.holdout"] = max(1, n // 10)
        console.print(
            f"section {number}: hold-out scaled to a tenth of --train-samples "
            f"({out['validation.holdout']} images)"
        )
    return out


@app.command()
def run(
    sections: Annotated[str | None, typer.Option(help="e.g. 1,3,12 (default: all)")] = None,
    repeats: Annotated[int, typer.Option(min=1, max=50, help="seeds per configuration")] = 1,
    batch1: Annotated[
        str,
        typer.Option(
            help="section 7: 'short' (6,000 images) or 'full' (the notebook's ~30 min per run)"
        ),
    ] = "short",
    train_samples: Annotated[int | None, typer.Option(help="override: first N images")] = None,
    epochs: Annotated[int | None, typer.Option(help="override the epochs of every run")] = None,
    follow_runs: Annotated[bool, typer.Option("--follow/--no-follow")] = True,
    search: Annotated[
        bool,
        typer.Option(
            "--search/--no-search",
            help="section 12: also queue its search preset (s12-search: 40 TPE trials with "
            "ASHA, the top 3 confirmed on 3 seeds; about 4-5x the grid's training seconds)",
        ),
    ] = False,
):
    """Queue the chosen sections as sweeps (and, with --search, section 12's search) and
    follow them with a progress bar."""
    if batch1 not in ("short", "full"):
        raise typer.BadParameter("--batch1 is 'short' or 'full'")
    wanted = parse_sections(sections)
    presets = call("GET", "/presets").json()
    overrides = {
        k: v for k, v in {"train_samples": train_samples, "epochs": epochs}.items() if v is not None
    }
    ids = []
    for number in wanted:
        preset = preset_for(presets, number, batch1)
        if preset is None:
            console.print(f"section {number}: nothing to run (its figures come with the report)")
            continue
        body = {"repeats": repeats, "overrides": scaled(preset, number, overrides)}
        r = call("POST", f"/presets/{preset['name']}/run", json=body).json()
        ids.append(r["id"])
        console.print(
            f"section {number}: {preset['name']} -> sweep {r['id']} ({len(r['children'])} run(s))"
        )
        if r.get("warning"):
            console.print(f"[yellow]{r['warning']}")
    search_ids = []
    if search and 12 in wanted:
        preset = next(p for p in presets if p["section"] == 12 and p.get("kind") == "search")
        body = {"overrides": scaled(preset, 12, overrides)}
        r = call("POST", f"/presets/{preset['name']}/run", json=body).json()
        search_ids.append(r["id"])
        console.print(
            f"section 12: {preset['name']} -> search {r['id']} ({len(r['trials'])} trial(s) "
            f"started; follow it with `labq search show {r['id']}` or on the dashboard)"
        )
    if follow_runs and ids:
        sweeps = follow(ids)
        failed = sum(s["counts"].get("failed", 0) for s in sweeps)
        console.print(
            f"done: {len(ids)} sweep(s)" + (f", [red]{failed} failed run(s)" if failed else "")
        )
    if follow_runs and search_ids:
        from cli.searches import follow as follow_search

        for search_id in search_ids:
            done = follow_search(search_id)
            console.print(f"search {search_id}: {done['status']}")
    if follow_runs and (ids or search_ids):
        console.print("next: `labq lab report`")


@app.command()
def report(
    out: Annotated[Path, typer.Option(help="folder for report.md and its PNGs")] = Path(
        "lab-report"
    ),
    sections: Annotated[str | None, typer.Option(help="e.g. 1,3,12 (default: all)")] = None,
    sweep: Annotated[
        list[str] | None,
        typer.Option(help="SECTION=SWEEP_ID to pick a sweep (default: the newest of the section)"),
    ] = None,
):
    """Write the lab report (Markdown + PNGs) from the API: published vs measured numbers,
    answers to the lab's questions, figures."""
    import httpx

    from lab.report import build_report

    chosen = {}
    for item in sweep or []:
        try:
            sec, sid = item.split("=")
            chosen[int(sec)] = int(sid)
        except ValueError:
            raise typer.BadParameter(
                f"--sweep {item!r}: expected SECTION=SWEEP_ID, e.g. 1=4"
            ) from None
    wanted = parse_sections(sections) if sections else None
    try:
        path = build_report(base_url(), out, wanted, chosen or None, get_settings().token or None)
    except httpx.ConnectError:
        console.print(f"[red]cannot reach labq at {base_url()} (is `labq up` running?)")
        raise typer.Exit(2) from None
    except httpx.HTTPStatusError as exc:
        console.print(f"[red]error {exc.response.status_code} from {exc.request.url}")
        raise typer.Exit(1) from None
    pngs = len(list(out.rglob("*.png")))
    console.print(f"report: {path} ({pngs} figure(s))")
