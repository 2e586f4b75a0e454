"""The lab report, built from labq's public HTTP API only (httpx), so a script can do the same:

    from lab.report import build_report
    build_report("http://127.0.0.1:8000", Path("lab-report"))

Per section of the lab: the notebook's published numbers beside the measured ones (same
configuration, epochs and batch), the answers to its questions computed from the data, and its
figures (compare.png per sweep; history.png and filters.png per configuration; gradient norms).
"""

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from lab.report_search import SECTION as SEARCH_SECTION
from lab.report_search import latest_search, search_figures, search_markdown, trial_table
from lab.report_stats import ALPHA, Stat, match_reference, num, pct

SUCCEEDED = "succeeded"


@dataclass
class Section:
    """One section's measured data, fetched once."""

    preset: dict
    sweep: dict
    out: Path  # folder for this section's PNGs
    rel: str  # that folder, relative to the report
    histories: dict[int, list[dict]] = field(default_factory=dict)
    details: dict[int, dict] = field(default_factory=dict)

    @property
    def configs(self) -> list[dict]:
        return self.sweep["configs"]

    def children(self, config: dict, status: str | None = SUCCEEDED) -> list[dict]:
        ids = set(config["children"])
        return [
            c
            for c in self.sweep["children"]
            if c["id"] in ids and (status is None or c["status"] == status)
        ]

    def runs(self, config: dict) -> list[list[dict]]:
        """Histories of the configuration's succeeded runs."""
        return [self.histories.get(c["id"], []) for c in self.children(config)]

    def stat(self, config: dict, metric: str) -> Stat:
        return Stat.from_api(config["stats"][metric])

    def find(self, **config) -> dict | None:
        return next(
            (c for c in self.configs if all(c["config"].get(k) == v for k, v in config.items())),
            None,
        )


class Api:
    def __init__(self, base_url: str, token: str | None = None):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=base_url, headers=headers, timeout=60)

    def json(self, path: str, **params):
        resp = self.http.get(path, params=params)
        resp.raise_for_status()
        return resp.json()

    def png(self, path: str, dest: Path) -> bool:
        resp = self.http.get(path)
        if resp.status_code != 200 or not resp.content.startswith(b"\x89PNG"):
            return False
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(resp.content)
        return True


def latest_sweeps(api: Api, presets: list[dict], chosen: dict[int, int] | None) -> dict[int, int]:
    """Section -> sweep id: the ones asked for, else the newest sweep of any of its presets."""
    if chosen:
        return dict(chosen)
    names = {p["name"]: p["section"] for p in presets}
    found: dict[int, int] = {}
    for s in api.json("/sweeps", limit=500):  # newest first
        section = names.get(s["preset"])
        if section is not None and section not in found:
            found[section] = s["id"]
    return found


def fetch(api: Api, preset: dict, sweep_id: int, out: Path) -> Section:
    sweep = api.json(f"/sweeps/{sweep_id}")
    preset = next((p for p in api.json("/presets") if p["name"] == sweep["preset"]), preset)
    rel = f"s{preset['section']:02d}"
    sec = Section(preset, sweep, out / rel, rel)
    for child in sweep["children"]:
        if child["epochs_done"]:
            sec.histories[child["id"]] = api.json(f"/experiments/{child['id']}/history")
    for config in sec.configs:
        done = sec.children(config)
        if done:
            first = done[0]["id"]
            sec.details[first] = api.json(f"/experiments/{first}")
            api.png(f"/experiments/{first}/history.png", sec.out / f"history-{first}.png")
            api.png(f"/experiments/{first}/filters.png", sec.out / f"filters-{first}.png")
    api.png(f"/sweeps/{sweep_id}/compare.png", sec.out / "compare.png")
    return sec


def published_table(sec: Section) -> list[str]:
    """Published beside measured, per configuration (mean ± std over repeats)."""
    lines = [
        "| configuration | runs | published val acc | measured val acc | published val loss "
        "| measured val loss | train acc | test acc | published s | measured train s "
        "| epochs | measured - published |",
        "|" + "---|" * 12,
    ]
    # The published figures are test-set ones; with a hold-out, compare them with test accuracy.
    holdout = isinstance(sec.sweep["base"].get("validation"), dict)
    for c in sec.configs:
        ref = match_reference(c["config"], sec.preset.get("reference", [])) or {}
        ref_acc = ref.get("val_accuracy", ref.get("final_val_accuracy"))
        lines.append(
            " | ".join(
                [
                    f"| {c['label']}",
                    f"{c['succeeded']}/{len(c['children'])}",
                    pct(ref_acc),
                    sec.stat(c, "final_val_accuracy").pct(),
                    num(ref.get("val_loss")),
                    sec.stat(c, "final_val_loss").fmt(".4f"),
                    sec.stat(c, "train_accuracy").pct(),
                    sec.stat(c, "test_accuracy").pct(),
                    num(ref.get("seconds"), ".1f"),
                    sec.stat(c, "train_seconds").fmt(".1f"),
                    sec.stat(c, "epochs_run").fmt(".1f"),
                    versus_published(
                        sec.stat(c, "test_accuracy" if holdout else "final_val_accuracy"), ref_acc
                    ),
                ]
            )
            + " |"
        )
    return lines


def versus_published(measured: Stat, published: float | None) -> str:
    """Measured minus published accuracy, and whether the published figure lies within two
    run-to-run standard deviations of the measured mean (needs two or more repeats)."""
    if measured.mean is None or published is None:
        return "-"
    diff = (measured.mean - published) * 100
    if measured.std is None:
        return f"{diff:+.2f} pts"
    within = abs(diff) <= 2 * measured.std * 100
    return f"{diff:+.2f} pts ({'within' if within else 'OUTSIDE'} 2 std of the runs)"


def figures(sec: Section) -> list[str]:
    lines = []
    if (sec.out / "compare.png").exists():
        lines += [f"![validation curves, every configuration]({sec.rel}/compare.png)", ""]
    for c in sec.configs:
        done = sec.children(c)
        if not done:
            continue
        i = done[0]["id"]
        pics = [
            f"![history {c['label']}]({sec.rel}/history-{i}.png)"
            for p in [sec.out / f"history-{i}.png"]
            if p.exists()
        ]
        pics += [
            f"![filters {c['label']}]({sec.rel}/filters-{i}.png)"
            for p in [sec.out / f"filters-{i}.png"]
            if p.exists()
        ]
        if pics:
            lines += [f"**{c['label']}** (run #{i}, seed {done[0]['seed']})", "", *pics, ""]
    return lines


def section_markdown(sec: Section, ctx: dict[int, Section]) -> list[str]:
    from lab.report_sections import answers

    p, s = sec.preset, sec.sweep
    lines = [
        f"## {p['section']}. {p['title']}",
        "",
        f"*The lab asks:* {p['question']}",
        "",
        f"Preset `{p['name']}` ({'faithful' if p['faithful'] else 'SHORTENED variant'}): "
        f"{p['description']}",
        "",
        f"Sweep #{s['id']}: {len(s['configs'])} configuration(s) x {s['repeats']} repeat(s), "
        f"{s['status']} ({', '.join(f'{n} {k}' for k, n in s['counts'].items())}).",
        "",
    ]
    lines += published_table(sec) + [""]
    failed = [c for c in s["children"] if c["status"] == "failed"]
    if failed:
        lines += [f"**{len(failed)} run(s) failed**, left out of every number below:", ""]
        lines += [
            f"- #{c['id']} {c['label']}: {(c['error'] or '').splitlines()[0][:300]}" for c in failed
        ] + [""]
    lines += ["### Answers from the data", ""] + answers(sec, ctx) + [""]
    lines += ["### Figures", ""] + figures(sec)
    return lines


def build_report(
    base_url: str,
    out: Path,
    sections: list[int] | None = None,
    sweeps: dict[int, int] | None = None,
    token: str | None = None,
) -> Path:
    """Write `out/report.md` and its PNGs; returns the Markdown file's path."""
    out.mkdir(parents=True, exist_ok=True)
    api = Api(base_url, token)
    presets = api.json("/presets")
    chosen = latest_sweeps(api, presets, sweeps)
    wanted = sorted(set(sections or range(1, 13)))
    ctx: dict[int, Section] = {}
    for number in wanted:
        if number in chosen:
            preset = next(p for p in presets if p["section"] == number)
            ctx[number] = fetch(api, preset, chosen[number], out)
    search = latest_search(api, presets) if SEARCH_SECTION in wanted else None
    lines = [
        "# labq lab report: MNIST dense networks, section by section",
        "",
        f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M UTC} from {base_url}.",
        "",
        "*Published* numbers are the lab notebook's (transcribed in "
        "`lab/lab2_reference.json`); *measured* numbers are this labq's runs of the same "
        "configuration, epochs and batch size. Measured values are the mean ± sample standard "
        "deviation over the seeds run; a difference between configurations counts as a "
        f"finding only when Welch's t-test on their runs gives p < {ALPHA} (two-sided); "
        "otherwise it is within the noise. Published times are the notebook's "
        "laptop and compare with measured times only in trend.",
        "",
    ]
    for number in wanted:
        preset = next(p for p in presets if p["section"] == number)
        if number == 11:
            lines += [
                f"## 11. {preset['title']}",
                "",
                preset["description"],
                "In this report they appear under each section's *Figures*.",
                "",
            ]
        elif number in ctx:
            lines += section_markdown(ctx[number], ctx)
        else:
            lines += [
                f"## {number}. {preset['title']}",
                "",
                f"Not measured: no sweep of preset(s) "
                f"{', '.join(p['name'] for p in presets if p['section'] == number)} "
                "(run `labq lab run --sections " + str(number) + "`).",
                "",
            ]
        if number == SEARCH_SECTION and search is not None:
            rel = f"s{SEARCH_SECTION:02d}"
            lines += search_markdown(api, search, ctx.get(number))
            lines += trial_table(search) + search_figures(api, search, out / rel, rel)
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    index: dict[str, Any] = {
        str(k): {"sweep": v.sweep["id"], "preset": v.preset["name"]} for k, v in ctx.items()
    }
    if search is not None:
        index.setdefault(str(SEARCH_SECTION), {})["search"] = search["id"]
    (out / "report.json").write_text(json.dumps(index, indent=1))
    return path
