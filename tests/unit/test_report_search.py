"""Section 12's search beside its grid in the lab report (lab/report_search.py), replayed from the
API's JSON of a real run: docs/lab-report/s12-search/ holds `GET /searches/1`, `GET /sweeps/1`
and `GET /experiments/{id}` of every run of one stack that ran both on the full data."""

import json
from pathlib import Path

from lab.report import Section
from lab.report_search import FIGURES, latest_search, search_figures, search_markdown, trial_table

RUN = Path(__file__).parents[2] / "docs" / "lab-report" / "s12-search"


class Replay:
    """The report's Api, answering from the saved JSON."""

    def __init__(self, searches: list[dict]):
        self.search = json.loads((RUN / "search-1.json").read_text())
        self.runs = json.loads((RUN / "search-1-runs.json").read_text())
        self.searches = searches
        self.asked: list[str] = []

    def json(self, path: str, **_params):
        self.asked.append(path)
        if path == "/searches":
            return self.searches
        if path == "/searches/1":
            return self.search
        return self.runs[path.rsplit("/", 1)[1]]

    def png(self, path: str, dest: Path) -> bool:
        """The saved progress figure; the other figures were not saved (as a 409 would be)."""
        self.asked.append(path)
        if path != "/searches/1/progress.png":
            return False
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes((RUN / "progress.png").read_bytes())
        return True


PRESETS = [
    {"name": "s12-optimal", "section": 12, "kind": "sweep"},
    {"name": "s12-search", "section": 12, "kind": "search"},
]


def test_the_newest_search_of_a_section_12_preset_is_read():
    api = Replay([{"id": 2, "name": "mine"}, {"id": 1, "name": "s12-search"}])
    assert latest_search(api, PRESETS)["id"] == 1
    assert latest_search(Replay([{"id": 2, "name": "mine"}]), PRESETS) is None


def test_the_winner_is_set_against_every_grid_configuration():
    api = Replay([])
    sweep = json.loads((RUN / "sweep-1.json").read_text())
    grid = Section({"section": 12}, sweep, RUN, "s12")
    lines = "\n".join(search_markdown(api, api.search, grid))

    # The winner's three test runs, read once each (98.49, 98.59, 98.45 %), and nothing else.
    assert sorted(api.asked) == [f"/experiments/{i}" for i in (47, 48, 49)]
    assert "trial 37 (565,227 parameters)" in lines
    assert "**98.51 ± 0.07%** over 3 run(s)" in lines
    assert "40 trial(s) (34 pruned, 6 succeeded), 9 confirmation run(s)" in lines
    # The grid's configurations, each with its own test accuracy, and the test against noise.
    for config in sweep["configs"]:
        assert f"| grid #1: {config['label']} |" in lines
        assert f"Search winner against {config['label']}:" in lines
    assert "98.41 ± 0.06%" in lines  # the 600-300-100 net without L2, as docs/lab-report says
    assert lines.count("NOT significant") == 3
    # What each cost, in training seconds over all their runs (docs: 3,107.3 s and 676.9 s).
    assert "the search trained 3,107.3 s in all, the grid 676.9 s (4.6x the grid's)" in lines


def test_a_search_without_a_result_says_so():
    api = Replay([])
    unfinished = {**api.search, "status": "running", "result": None}
    lines = search_markdown(api, unfinished, None)
    assert "No result yet" in "\n".join(lines) and api.asked == []


def test_every_trial_is_listed_with_its_parameters_and_the_winner_starred():
    search = Replay([]).search
    lines = trial_table(search)
    rows = [line for line in lines if line.startswith("| ") and line[2].isdigit()]
    assert len(rows) == 40 and sum("pruned" in r for r in rows) == 34
    header = lines[2]
    assert "val_accuracy (hold-out)" in header and "| layers.0.units |" in header
    assert header.count("|") == rows[0].count("|")  # one cell per column
    (star,) = [r for r in rows if "★" in r]
    assert star.startswith("| 37 ★ | succeeded | 16/20 | 0.9866 | 126.8 | 482 |")  # early stop
    assert rows[0].startswith("| 0 | pruned | 2/20 | 0.9714 | 10.8 | 837 |")


def test_the_figures_the_api_has_drawn_are_saved_and_shown(tmp_path):
    api = Replay([])
    lines = search_figures(api, api.search, tmp_path / "s12", "s12")
    assert api.asked == [
        f"/searches/1/{n}" for n in ("progress.png", "parallel.png", "importance.png")
    ]
    assert (tmp_path / "s12" / "search-1-progress.png").read_bytes()[:4] == b"\x89PNG"
    shown = [line for line in lines if line.startswith("![")]
    assert shown == [f"![{FIGURES['progress.png']}](s12/search-1-progress.png)"]
