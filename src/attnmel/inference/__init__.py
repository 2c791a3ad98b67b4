"""Turning images into answers: a checkpoint (or ensemble) loaded with its preprocessing, run over
batches with optional test-time augmentation, temperatures applied the same way in every door."""

from attnmel.inference.loading import (
    LoadedModel,
    SplitPredictions,
    load_model,
    load_predictor,
    predict_split,
    read_split,
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
    "predict_split",
    "Prediction",
    "Predictions",
    "Predictor",
    "probabilities_from_logits",
    "read_split",
    "run_inference",
    "SplitPredictions",
]
