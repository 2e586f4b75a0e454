"""Sweep expansion: the cartesian product, dotted paths, caps, seeds and config keys; presets."""

import json

import pytest

from core.search import SearchSpec, check
from core.sweep import SweepError, SweepSpec, config_key, expand, get_path, label, set_path
from lab import presets

BASE = {"layers": [{"units": 32}], "epochs": 1, "train_samples": 1000}


def sweep(grid=None, repeats=1, base=None, name="s") -> SweepSpec:
    return SweepSpec(
        name=name, base=BASE if base is None else base, grid=grid or {}, repeats=repeats
    )


def fields(exc: SweepError) -> list[str]:
    return [p.field for p in exc.problems]


def test_cartesian_product_sets_each_path():
    children = expand(
        sweep({"layers.0.units": [16, 64, 128], "optimizer.learning_rate": [0.001, 0.02]}), 100
    )
    got = [(c.spec.layers[0].units, c.spec.optimizer.learning_rate) for c in children]
    assert sorted(got) == sorted((u, lr) for u in (16, 64, 128) for lr in (0.001, 0.02))
    assert len({c.config_key for c in children}) == 6
    assert all(c.spec.epochs == 1 and c.spec.train_samples == 1000 for c in children)
    assert children[0].config == {"layers.0.units": 16, "optimizer.learning_rate": 0.001}


def test_whole_layers_list_then_element_path_and_activation():
    children = expand(
        sweep(
            {
                "layers.0.activation": ["relu", "sigmoid"],
                "layers": [[{"units": 10}], [{"units": 20}, {"units": 5}]],
            }
        ),
        100,
    )
    assert len(children) == 4
    shapes = sorted(
        (tuple(lyr.units for lyr in c.spec.layers), c.spec.layers[0].activation) for c in children
    )
    assert shapes == [((10,), "relu"), ((10,), "sigmoid"), ((20, 5), "relu"), ((20, 5), "sigmoid")]
    assert children[0].config["layers"][0]["type"] == "dense"  # normalized, defaults filled


def test_batch_size_and_names():
    children = expand(sweep({"batch_size": [32, 256]}, name="batches"), 10)
    assert [c.spec.batch_size for c in children] == [32, 256]
    assert children[0].spec.name == "batches: batch_size=32"


def test_repeats_get_distinct_deterministic_seeds_and_share_the_key():
    children = expand(
        sweep({"layers.0.units": [8, 16]}, repeats=3, base={**BASE, "seed": 100}), 100
    )
    assert len(children) == 6
    by_key: dict[str, list[int]] = {}
    for c in children:
        by_key.setdefault(c.config_key, []).append(c.spec.seed)
    assert list(by_key.values()) == [[100, 101, 102], [100, 101, 102]]
    again = expand(sweep({"layers.0.units": [8, 16]}, repeats=3, base={**BASE, "seed": 100}), 100)
    assert [c.spec.seed for c in again] == [c.spec.seed for c in children]
    assert all(c.spec.name.endswith(f"#{c.repeat + 1}") for c in children)


def test_random_base_seed_is_drawn_once_per_sweep():
    children = expand(sweep({"layers.0.units": [8, 16]}, repeats=2), 100)
    seeds = [c.spec.seed for c in children]
    assert seeds[0] == seeds[2] and seeds[1] == seeds[0] + 1


@pytest.mark.parametrize(
    "grid, field",
    [
        ({"layers.7.units": [10]}, "grid.layers.7.units"),
        ({"layers.x.units": [10]}, "grid.layers.x.units"),
        ({"epochs.deep": [1]}, "grid.epochs.deep"),
        ({"layers.0.units": [16, 0]}, "grid.layers.0.units"),
        ({"layers.0.activation": ["relu", "swish"]}, "grid.layers.0.activation"),
        ({"optimizer.learning_rate": [-1]}, "grid.optimizer.learning_rate"),
        ({"surprise": [1]}, "grid.surprise"),
        ({"layers": [[{"units": 0}]]}, "grid.layers"),
        ({"epochs": []}, "grid.epochs"),
        ({"a..b": [1]}, "grid.a..b"),
    ],
)
def test_bad_paths_and_values_name_the_grid_path(grid, field):
    with pytest.raises(SweepError) as info:
        expand(sweep(grid), 100)
    assert field in fields(info.value), info.value.problems


def test_bad_base_names_the_base_field():
    with pytest.raises(SweepError) as info:
        expand(sweep({"epochs": [1]}, base={"epochs": 0}), 100)
    assert fields(info.value) == ["base.epochs"]


def test_child_cap_counts_repeats():
    grid = {"layers.0.units": list(range(1, 11))}
    assert len(expand(sweep(grid, repeats=2), 20)) == 20
    with pytest.raises(SweepError) as info:
        expand(sweep(grid, repeats=3), 20)
    assert fields(info.value) == ["grid"] and "30 children exceeds the cap of 20" in str(info.value)


def test_cost_cap_applies_to_every_child():
    grid = {"layers.0.units": [16, 4096]}
    assert len(expand(sweep(grid), 10, max_flops=1e14)) == 2
    with pytest.raises(SweepError) as info:
        expand(sweep(grid), 10, max_flops=1e10)
    assert fields(info.value) == ["grid"] and "units=4096" in str(info.value)


def test_path_helpers():
    doc = {"a": [{"b": 1}], "c": None, "s": "x"}
    set_path(doc, "a.0.b", 2)
    set_path(doc, "c.d", 3)
    assert doc["a"][0]["b"] == 2 and doc["c"] == {"d": 3}
    assert get_path(doc, "a.0.b") == 2 and get_path(doc, "a.5.b") is None
    with pytest.raises(KeyError):
        set_path(doc, "s.t", 1)
    long = {"layers": [{"units": i, "activation": "relu", "l2": 0.0} for i in range(12)]}
    key = config_key(long)
    assert len(key) <= 500 and key != config_key({**long, "x": 1})
    assert (
        label({"layers.0.units": 50, "layers.0.activation": "relu"}) == "units=50 activation=relu"
    )


def test_presets_cover_the_twelve_sections_and_expand():
    all_presets = presets.presets()
    assert {p.section for p in all_presets.values()} == set(range(1, 13))
    assert not presets.get("s11-visualization").runnable
    short = presets.get("s07-batch1-short")
    assert not short.faithful and "SHORTENED" in short.description
    assert short.base["train_samples"] == 6000 and presets.get("s07-batch1").faithful
    optimal = presets.get("s12-optimal")
    assert optimal.base["validation"] == {"holdout": 5000} and "decay" in optimal.description
    for p in all_presets.values():
        if not p.runnable or p.search is not None:
            continue
        children = expand(SweepSpec(name=p.name, base=p.base, grid=p.grid), 200, 5e14)
        assert len(children) == p.public()["configurations"]
        # Every published configuration matches exactly one cell of the sweep.
        keys = {json.dumps(c.config, sort_keys=True) for c in children}
        for ref in p.reference:
            assert json.dumps(ref["config"], sort_keys=True) in keys, (p.name, ref)
    # Section 12 as a search: a valid search spec under the default cost cap, on a hold-out.
    s12 = presets.get("s12-search")
    assert s12.public()["kind"] == "search" and presets.get("s12-optimal").kind == "sweep"
    spec = SearchSpec.model_validate({**s12.search, "name": s12.name, "base": s12.base})
    assert check(spec, 5e14)["validation"] == {"holdout": 5000}
    widths = [
        c.spec.layers[0].units
        for c in expand(
            SweepSpec(
                name="w", base=presets.get("s01-width").base, grid=presets.get("s01-width").grid
            ),
            10,
        )
    ]
    assert widths == [50, 100, 200, 300, 500]
