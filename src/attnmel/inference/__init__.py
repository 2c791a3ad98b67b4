"""Turning images into answers: a checkpoint (or ensemble) loaded with its preprocessing
(``load_model``, the one loader), run over batches with optional test-time augmentation, temperatures
applied the same way in every door. Reading a dataset split to score is evaluation's
(``attnmel.evaluation.split_predictions``)."""

from attnmel.inference.loading import (
    LoadedModel,
    load_model,
    load_predictor,
)
from attnmel.inference.prediction import Prediction
from attnmel.inference.runner import (
    NonFiniteOutputError,
    Predictions,
    Predictor,
    eval_loader,
    probabilities_from_logits,
    run_inference,
)
from attnmel.inference.settings import DataSplit, InferenceSettings

__all__ = [
    "DataSplit",
    "eval_loader",
    "InferenceSettings",
    "load_model",
    "load_predictor",
    "LoadedModel",
    "NonFiniteOutputError",
    "Prediction",
    "Predictions",
    "Predictor",
    "probabilities_from_logits",
    "run_inference",
]
