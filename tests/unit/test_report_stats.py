"""The report's arithmetic: mean ± std, significance against noise, epochs to a threshold,
gradient norms in layer order, and matching measured cells to the published ones."""

import pytest

from lab.report_stats import (
    Stat,
    compare,
    epochs_to,
    epochs_to_stat,
    grad_norms,
    match_reference,
    mean_grad_norms,
    val_loss_rises,
)


def test_stat_and_percent():
    s = Stat.of([0.97, 0.98, None, float("nan")])
    assert s.n == 2 and s.mean == pytest.approx(0.975) and s.std == pytest.approx(0.00707, abs=1e-5)
    assert s.pct() == "97.50 ± 0.71%"
    assert Stat.of([0.9]).pct() == "90.00%" and Stat.of([]).pct() == "-"


def test_difference_within_the_noise_is_not_significant():
    noisy_a, noisy_b = Stat.of([0.975, 0.980, 0.972]), Stat.of([0.973, 0.978, 0.970])
    significant, text = compare(noisy_a, noisy_b)
    assert significant is False and "NOT significant" in text
    clear_a, clear_b = Stat.of([0.980, 0.981, 0.9805]), Stat.of([0.950, 0.951, 0.9505])
    significant, text = compare(clear_a, clear_b)
    assert significant is True and text.startswith("+3.00 points")
    significant, text = compare(Stat.of([0.98]), Stat.of([0.97]))
    assert significant is None and "not measured" in text


def test_epochs_to_threshold_and_instability():
    h = [
        {"epoch": i + 1, "val_accuracy": v, "val_loss": lyr}
        for i, (v, lyr) in enumerate([(0.93, 0.3), (0.96, 0.2), (0.975, 0.25), (0.97, 0.22)])
    ]
    assert epochs_to(h, 0.95) == 2 and epochs_to(h, 0.97) == 3 and epochs_to(h, 0.99) is None
    st, missed = epochs_to_stat([h, h[:2]], 0.97)
    assert st.mean == 3 and missed == 1
    assert val_loss_rises(h) == 1


def test_grad_norms_in_layer_order():
    h = [
        {"epoch": 1, "grad_norms": {"output": 0.3, "dense_10": 0.1, "dense_2": 0.2}},
        {"epoch": 2, "grad_norms": {"output": 0.2, "dense_10": 0.05, "dense_2": 0.1}},
    ]
    assert [n for n, _ in grad_norms(h)] == ["dense_2", "dense_10", "output"]
    last = mean_grad_norms([h, h], -1)
    assert [(n, s.mean) for n, s in last] == [("dense_2", 0.1), ("dense_10", 0.05), ("output", 0.2)]


def test_match_reference():
    refs = [{"config": {"layers.0.units": 50}, "published": {"val_accuracy": 0.9617}}]
    assert match_reference({"layers.0.units": 50}, refs)["val_accuracy"] == 0.9617
    assert match_reference({"layers.0.units": 60}, refs) is None
