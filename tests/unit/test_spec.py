"""The experiment spec: defaults, bounds, derived numbers."""

import pytest
from pydantic import ValidationError

from core.spec import ExperimentSpec, architecture, cost_error, estimate_flops, param_count


def test_defaults_are_the_labs():
    s = ExperimentSpec.model_validate({"layers": [{"units": 300}]})
    assert s.layers[0].type == "dense" and s.layers[0].activation == "relu"
    assert (s.optimizer.name, s.optimizer.learning_rate) == ("adam", 0.001)
    assert (s.batch_size, s.epochs, s.validation, s.dataset) == (128, 5, "test", "mnist")
    assert s.name == "784-300-10 relu"
    assert 0 <= s.seed < 2**31  # a random seed is drawn and stored, so the run is reproducible


def test_seed_given_is_kept_and_roundtrip_is_stable():
    s = ExperimentSpec.model_validate({"layers": [{"units": 10}], "seed": 7, "name": "x"})
    again = ExperimentSpec.model_validate(s.model_dump(mode="json"))
    assert again == s and again.seed == 7


def test_params_match_keras_counts():
    s = ExperimentSpec.model_validate({"layers": [{"units": 300}, {"units": 150}]})
    assert param_count(s) == 784 * 300 + 300 + 300 * 150 + 150 + 150 * 10 + 10
    assert architecture(s) == "784-300-150-10 relu"


def test_section_12_callbacks_defaults():
    s = ExperimentSpec.model_validate({"early_stopping": {}, "reduce_lr_on_plateau": {}})
    es, rl = s.early_stopping, s.reduce_lr_on_plateau
    assert (es.monitor, es.patience, es.restore_best_weights) == ("val_accuracy", 3, True)
    assert (rl.monitor, rl.factor, rl.patience, rl.min_lr) == ("val_loss", 0.5, 2, 1e-7)


@pytest.mark.parametrize(
    "body",
    [
        {"layers": [{"units": 0}]},
        {"layers": [{"units": 8193}]},
        {"layers": [{"units": 5, "l2": -0.1}]},
        {"layers": [{"type": "dropout", "rate": -0.1}]},
        {"epochs": 0},
        {"batch_size": 0},
        {"train_samples": 60001},
        {"seed": -1},
        {"validation": {"holdout": 0}},
        {"validation": "train"},
        {"name": "x" * 201},
        {"early_stopping": {"patience": -1}},
        {"reduce_lr_on_plateau": {"factor": 1.0}},
        {"optimizer": {"name": "sgd", "momentum": 1.0}},
    ],
)
def test_bounds(body):
    with pytest.raises(ValidationError):
        ExperimentSpec.model_validate(body)


def test_holdout_counts():
    s = ExperimentSpec.model_validate({"validation": {"holdout": 5000}, "train_samples": 20000})
    assert (s.n_fit, s.n_val) == (15000, 5000)
    t = ExperimentSpec.model_validate({})
    assert (t.n_fit, t.n_val) == (60000, 10000)


def test_cost_grows_with_work_and_cap_applies():
    small = ExperimentSpec.model_validate({"layers": [{"units": 100}], "epochs": 1})
    big = ExperimentSpec.model_validate({"layers": [{"units": 100}], "epochs": 10})
    assert estimate_flops(big) == pytest.approx(10 * estimate_flops(small))
    assert cost_error(small, 1e15) is None
    assert "exceeds" in cost_error(big, estimate_flops(small) * 2)
