"""A run's trained model: download it, read where it errs, try it on new images.

`POST /experiments/{id}/predict` answers from the run's dense weights with a NumPy forward pass
(core.dense_net): the API never imports TensorFlow. A PNG arrives as base64 inside a JSON body,
so predictions are JSON writes like every other, under the same-origin and JSON-only rules.
"""

import base64
import binascii
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, HTTPException, Query, Response
from fastapi.exceptions import RequestValidationError
from sqlalchemy.orm import Session

from api import predictor
from api.contract import ErrorBody
from api.deps import ExperimentDep, SessionDep, SettingsDep
from api.model_schemas import Evaluation, Prediction, PredictRequest, PredictResponse
from core import digit_image, model_figures
from core.constants import FINISHED
from core.evaluation import MISTAKES, Mistakes
from core.model_artifacts import MISTAKES as MISTAKES_NPZ
from core.model_artifacts import MODEL
from db import repo
from db.models import Experiment

router = APIRouter(prefix="/experiments", tags=["models"])

PNG: dict[int | str, dict[str, Any]] = {200: {"content": {"image/png": {}}}}
NO_MODEL: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "No such experiment"},
    409: {
        "model": ErrorBody,
        "description": "The run has not finished, or kept no model (the body says why)",
    },
}


def _no_model(exp: Experiment, what: str = "stored model") -> HTTPException:
    if exp.status not in FINISHED:
        return HTTPException(409, f"experiment {exp.id} has no trained model yet ({exp.status})")
    note = (exp.model_info or {}).get("note")
    reason = f": {note}" if note else f" (it ended {exp.status})"
    return HTTPException(409, f"experiment {exp.id} has no {what}{reason}")


def _evaluation(exp: Experiment) -> Evaluation:
    if exp.evaluation is None:
        raise _no_model(exp, "evaluation")
    return Evaluation.model_validate(exp.evaluation)


@router.get(
    "/{experiment_id}/model.keras",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}, **NO_MODEL},
)
def model_keras(exp: ExperimentDep, session: SessionDep) -> Response:
    """The trained model in Keras's native format: `keras.saving.load_model(path)`. Which
    weights it holds (final or best) is the run's `model.weights`."""
    art = repo.get_artifact(session, exp.id, MODEL)
    if art is None:
        raise _no_model(exp)
    return Response(
        art.data,
        media_type=art.content_type,
        headers={"Content-Disposition": f'attachment; filename="labq-{exp.id}.keras"'},
    )


@router.get("/{experiment_id}/evaluation", response_model=Evaluation, responses=NO_MODEL)
def evaluation(exp: ExperimentDep) -> Evaluation:
    """Confusion matrix and per-class precision and recall on the test set, and on the
    hold-out when the run validated on one (also in the run's JSON as `evaluation`)."""
    return _evaluation(exp)


@router.get(
    "/{experiment_id}/confusion.png",
    response_class=Response,
    responses={**PNG, **NO_MODEL},
)
def confusion_png(
    exp: ExperimentDep,
    which: Annotated[Literal["test", "holdout"], Query(alias="set")] = "test",
) -> Response:
    result = _evaluation(exp)
    on = result.test if which == "test" else result.holdout
    if on is None:
        raise HTTPException(
            409, f"experiment {exp.id} validated on the test set: it has no hold-out evaluation"
        )
    title = f"#{exp.id} {exp.name} - {'test set' if which == 'test' else 'hold-out'}"
    return Response(model_figures.confusion_png(on.confusion, title), media_type="image/png")


@router.get(
    "/{experiment_id}/mistakes.png",
    response_class=Response,
    responses={**PNG, **NO_MODEL},
)
def mistakes_png(
    exp: ExperimentDep,
    session: SessionDep,
    n: Annotated[int, Query(ge=1, le=MISTAKES)] = MISTAKES,
) -> Response:
    """The test images the model got wrong with the most confidence: true -> predicted."""
    art = repo.get_artifact(session, exp.id, MISTAKES_NPZ)
    if art is None:
        raise _no_model(exp, "evaluation")
    png = model_figures.mistakes_png(Mistakes.from_npz(art.data), f"#{exp.id} {exp.name}", n)
    return Response(png, media_type="image/png")


def _invalid(where: tuple[str | int, ...], msg: str, kind: str) -> RequestValidationError:
    return RequestValidationError([{"loc": ("body", *where), "msg": msg, "type": kind}])


def _inputs(body: PredictRequest, max_images: int, max_pixels: int) -> tuple[Any, Any]:
    """(images (n, 28, 28) for the model, the PNG's 28x28 or None); a 422 naming the problem."""
    if body.images is not None:
        if len(body.images) > max_images:
            raise _invalid(
                ("images",),
                f"at most {max_images} images per request (LABQ_MAX_PREDICT_IMAGES); "
                f"got {len(body.images)}",
                "too_long",
            )
        try:
            return digit_image.batch(body.images), None
        except digit_image.ImageError as exc:
            raise _invalid(("images", *exc.where), str(exc), "image") from None
    try:
        data = base64.b64decode(body.png_base64(), validate=True)
    except (binascii.Error, ValueError):
        raise _invalid(
            ("png",), "is not base64 (or a data:image/png;base64 URL)", "base64"
        ) from None
    try:
        digit = digit_image.to_mnist(digit_image.decode_png(data, max_pixels))
    except digit_image.ImageError as exc:
        raise _invalid(("png",), str(exc), "image") from None
    return digit[np.newaxis], digit


@router.post(
    "/{experiment_id}/predict",
    response_model=PredictResponse,
    responses={
        **NO_MODEL,
        422: {"model": ErrorBody, "description": "A bad image or batch: which one, and why"},
    },
)
def predict(
    exp: ExperimentDep, body: PredictRequest, session: SessionDep, settings: SettingsDep
) -> PredictResponse:
    """Class probabilities and the predicted digit of each image, from the run's trained
    weights (dropout off), computed without TensorFlow."""
    images, seen = _inputs(body, settings.max_predict_images, settings.max_predict_pixels)
    net = _net(session, exp)
    probabilities = net.probabilities(images)
    return PredictResponse(
        experiment_id=exp.id,
        weights=(exp.model_info or {}).get("weights"),
        predictions=[
            Prediction(digit=int(np.argmax(p)), probabilities=[float(v) for v in p])
            for p in probabilities
        ],
        input=seen.tolist() if seen is not None else None,
    )


def _net(session: Session, exp: Experiment) -> Any:
    net = predictor.dense_net(session, exp.id)
    if net is None:
        raise _no_model(exp, "stored weights to predict with")
    return net
