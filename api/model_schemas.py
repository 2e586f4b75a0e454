"""Shapes of a run's trained model, its evaluation and predictions (api/routes/models.py)."""

import re
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, SkipValidation, model_validator

from core.evaluation import CLASSES


class ModelInfo(BaseModel):
    """What the run kept of its trained model."""

    weights: Literal["final", "best"] | None = Field(
        description="final: the weights after the last epoch; best: those of the best epoch, "
        "put back by early stopping (restore_best_weights)"
    )
    best_epoch: int | None = Field(description="the epoch whose weights were put back")
    bytes: int | None = Field(description="size of model.keras")
    stored: bool = Field(description="model.keras can be downloaded")
    predict: bool = Field(description="the plain weights for POST /predict were stored")
    note: str | None = Field(description="why something was not stored")


class SetEvaluation(BaseModel):
    """The model on one set of images: counts[true][predicted] and per-class ratios."""

    images: int
    accuracy: float | None
    confusion: list[list[int]] = Field(description="confusion[true digit][predicted digit]")
    precision: list[float | None] = Field(
        description="per digit; null where it was never predicted"
    )
    recall: list[float | None] = Field(
        description="per digit (its accuracy); null where the set has none"
    )
    support: list[int] = Field(description="images of each digit in the set")


class Evaluation(BaseModel):
    test: SetEvaluation = Field(description="the test set (10,000 images), read once at the end")
    holdout: SetEvaluation | None = Field(
        None, description="the hold-out, when the run validated on one"
    )


# The schema of one image; the route checks the images itself (core.digit_image.batch), so that
# a wrong batch is one 422 naming the first bad image, not an error per pixel.
Pixel = Annotated[float, Field(ge=0, le=255)]
Row = Annotated[list[Pixel], Field(min_length=28, max_length=28)]
Image28 = Annotated[list[Row], Field(min_length=28, max_length=28)]
DATA_URL = re.compile(r"^data:image/png;base64,", re.IGNORECASE)


class PredictRequest(BaseModel):
    """Either `images` (a batch of 28x28 grey levels, MNIST's form: white digit on black) or
    `png` (one picture of a digit, any size, base64; it is brought into MNIST's form)."""

    model_config = ConfigDict(extra="forbid")

    images: list[Annotated[Image28, SkipValidation]] | None = Field(
        None,
        min_length=1,
        max_length=10_000,
        description="each 28 rows of 28 numbers 0-255; at most LABQ_MAX_PREDICT_IMAGES (256)",
    )
    png: str | None = Field(
        None,
        min_length=1,
        description="a PNG file in base64, or a data:image/png;base64 URL (a canvas's toDataURL)",
    )

    @model_validator(mode="after")
    def _one_of(self) -> Self:
        if (self.images is None) == (self.png is None):
            raise ValueError("send either images (28x28 arrays) or png (one picture), not both")
        return self

    def png_base64(self) -> str:
        return DATA_URL.sub("", self.png or "", count=1)


class Prediction(BaseModel):
    digit: int = Field(ge=0, lt=CLASSES, description="the most probable digit")
    probabilities: list[float] = Field(description="of each digit 0-9")


class PredictResponse(BaseModel):
    experiment_id: int
    weights: Literal["final", "best"] | None = Field(description="which weights answered")
    predictions: list[Prediction]
    input: list[list[int]] | None = Field(
        None, description="for a PNG: the 28x28 grey levels it became, what the model saw"
    )
