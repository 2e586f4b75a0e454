"""The experiment spec: what a user may ask labq to train, with bounds on every number.

Input is `Flatten(28, 28)`; output is `Dense(10, softmax)`; both are implicit. Everything in between
is `layers`. The same model validates the API's input and, again, the worker's read from the database.
"""

import random
from collections.abc import Iterable
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from core.constants import MNIST_TEST, MNIST_TRAIN

Activation = Literal["relu", "sigmoid", "tanh", "elu", "selu", "gelu", "linear"]
Monitor = Literal["val_accuracy", "val_loss", "accuracy", "loss"]

INPUT_UNITS = 28 * 28
OUTPUT_UNITS = 10


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Dense(_Strict):
    type: Literal["dense"] = "dense"
    units: int = Field(ge=1, le=8192)
    activation: Activation = "relu"
    l2: float = Field(0.0, ge=0.0, le=1.0, description="L2 penalty on the kernel")


class Dropout(_Strict):
    type: Literal["dropout"]
    rate: float = Field(ge=0.0, lt=1.0)


def _layer_type(value: Any) -> Any:
    """The layer's tag as given, of any type: pydantic reports one that is missing (None) or
    matches no layer type, so it is passed on unchanged."""
    if isinstance(value, dict):
        return value.get("type", "dense")
    return getattr(value, "type", "dense")


Layer = Annotated[
    Annotated[Dense, Tag("dense")] | Annotated[Dropout, Tag("dropout")],
    Discriminator(_layer_type),
]


class Optimizer(_Strict):
    name: Literal["adam", "sgd", "rmsprop"] = "adam"
    learning_rate: float = Field(0.001, gt=0.0, le=10.0)
    momentum: float | None = Field(None, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _momentum_applies(self) -> Self:
        if self.momentum is not None and self.name == "adam":
            raise ValueError("momentum applies to sgd and rmsprop only, not adam")
        return self


class Holdout(_Strict):
    holdout: int = Field(ge=1, le=MNIST_TRAIN - 1, description="last N training images")


class EarlyStopping(_Strict):
    """Keras EarlyStopping; defaults are the lab's section 12."""

    monitor: Monitor = "val_accuracy"
    patience: int = Field(3, ge=0, le=500)
    min_delta: float = Field(0.0, ge=0.0, le=1.0)
    restore_best_weights: bool = True


class ReduceLROnPlateau(_Strict):
    """Keras ReduceLROnPlateau; defaults are the lab's section 12."""

    monitor: Monitor = "val_loss"
    factor: float = Field(0.5, gt=0.0, lt=1.0)
    patience: int = Field(2, ge=0, le=500)
    min_lr: float = Field(1e-7, ge=0.0, le=1.0)


class ExperimentSpec(_Strict):
    name: str = Field("", max_length=200, description="free text; defaults to the architecture")
    dataset: Literal["mnist"] = "mnist"
    layers: list[Layer] = Field(default_factory=list, max_length=12)
    optimizer: Optimizer = Field(default_factory=Optimizer)
    batch_size: int = Field(128, ge=1, le=MNIST_TRAIN)
    epochs: int = Field(5, ge=1, le=500)
    validation: Literal["test"] | Holdout = "test"
    early_stopping: EarlyStopping | None = None
    reduce_lr_on_plateau: ReduceLROnPlateau | None = None
    seed: int | None = Field(None, ge=0, le=2**31 - 1, description="random when omitted")
    train_samples: int | None = Field(
        None, ge=1, le=MNIST_TRAIN, description="use only the first N training images"
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if isinstance(self.validation, Holdout) and self.validation.holdout >= self.n_train_total:
            raise ValueError(
                f"validation.holdout ({self.validation.holdout}) must be smaller than the "
                f"{self.n_train_total} training images in use"
            )
        if self.seed is None:
            self.seed = random.randrange(2**31)
        if not self.name:
            self.name = architecture(self)
        return self

    @property
    def n_train_total(self) -> int:
        return self.train_samples or MNIST_TRAIN

    @property
    def n_fit(self) -> int:
        """Images the model is fitted on (the training images minus any hold-out)."""
        held = self.validation.holdout if isinstance(self.validation, Holdout) else 0
        return self.n_train_total - held

    @property
    def n_val(self) -> int:
        return self.validation.holdout if isinstance(self.validation, Holdout) else MNIST_TEST


def dense_widths(spec: ExperimentSpec) -> list[int]:
    return (
        [INPUT_UNITS] + [lyr.units for lyr in spec.layers if lyr.type == "dense"] + [OUTPUT_UNITS]
    )


def architecture(spec: ExperimentSpec) -> str:
    """One line such as `784-300-10 relu` or `784-200-100-10 relu/tanh`."""
    acts = [lyr.activation for lyr in spec.layers if lyr.type == "dense"]
    unique = list(dict.fromkeys(acts))
    drops = [f"{lyr.rate:g}" for lyr in spec.layers if lyr.type == "dropout"]
    text = "-".join(str(w) for w in dense_widths(spec))
    if unique:
        text += " " + "/".join(unique)
    if drops:
        text += " dropout " + "/".join(drops)
    return text


def param_count(spec: ExperimentSpec) -> int:
    widths = dense_widths(spec)
    return sum(a * b + b for a, b in zip(widths, widths[1:], strict=False))


def estimate_flops(spec: ExperimentSpec) -> float:
    """Floating-point operations of the whole job: 6 per weight per training image
    (forward, two backward matmuls), 2 per weight per validation image, every epoch."""
    weights = param_count(spec)
    per_epoch = 6 * weights * spec.n_fit + 2 * weights * spec.n_val
    return float(per_epoch * spec.epochs)


def cost_error(spec: ExperimentSpec, max_flops: float) -> str | None:
    flops = estimate_flops(spec)
    if flops > max_flops:
        return (
            f"estimated cost {flops:.3g} FLOP exceeds the per-job cap of {max_flops:.3g} "
            "(fewer epochs, units, layers or train_samples)"
        )
    return None


# Tags of the spec's unions (layer kinds, validation modes) that pydantic puts in error locations.
UNION_TAGS = frozenset({"dense", "dropout", "Holdout", "literal['test']"})


def field_path(loc: Iterable[object]) -> list[str]:
    """An error location as the client wrote it: the parts without pydantic's union tags."""
    return [str(p) for p in loc if str(p) not in UNION_TAGS]
