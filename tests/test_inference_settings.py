"""The evaluating doors share one set of inference options (``InferenceSettings``) and one way of
naming the data (``DataSplit``), instead of each re-listing device, TTA, temperature and the rest."""

from __future__ import annotations

import inspect

import pytest

from attnmel.cli import build_parser
from attnmel.cli.options import inference_settings
from attnmel.errors import ConfigError
from attnmel.evaluation.attention_quality import attention_quality
from attnmel.evaluation.calibration import calibrate_checkpoint
from attnmel.evaluation.compare import score_checkpoint
from attnmel.evaluation.evaluate import evaluate_checkpoint
from attnmel.evaluation.folds import out_of_fold_predictions
from attnmel.inference import InferenceSettings
from attnmel.predict import predict_images

ENTRY_POINTS = [evaluate_checkpoint, calibrate_checkpoint, out_of_fold_predictions, score_checkpoint,
                attention_quality, predict_images]


@pytest.mark.parametrize("entry_point", ENTRY_POINTS, ids=lambda f: f.__name__)
def test_every_entry_point_takes_the_settings_not_a_list_of_options(entry_point):
    parameters = inspect.signature(entry_point).parameters
    assert len(parameters) <= 6, list(parameters)
    assert "settings" in parameters
    assert not {"device", "tta", "trust_pickle", "batch_size", "num_workers", "progress"} & set(parameters)


@pytest.mark.parametrize("changes", [{"batch_size": 0}, {"batch_size": True}, {"workers": -1}, {"workers": 1.5}])
def test_bad_settings_are_refused_where_they_are_made(changes):
    with pytest.raises(ConfigError, match=next(iter(changes))):
        InferenceSettings(**changes)


ARGV = {
    "evaluate": ["--data", "d", "--tta", "--no-temperature", "--threshold", "0.3", "--workers", "2"],
    "calibrate": ["--checkpoint", "c", "--data", "d", "--tta", "--workers", "2"],
    "compare": ["a.csv", "b.csv", "--data", "d", "--tta", "--workers", "2", "--threshold", "0.3"],
    "predict": ["x.jpg", "--tta", "--threshold", "0.3"],
}


@pytest.mark.parametrize("command", sorted(ARGV))
def test_every_command_turns_the_same_flags_into_the_same_settings(command):
    argv = [command, *ARGV[command], "--device", "cpu", "--batch-size", "8", "--trust-pickle"]
    settings = inference_settings(build_parser(command).parse_args(argv))
    assert (settings.device, settings.tta, settings.trust_pickle, settings.batch_size) == ("cpu", True, True, 8)
    assert settings.workers == (0 if command == "predict" else 2)
    assert settings.threshold == (None if command == "calibrate" else 0.3)  # None: the stored operating point
    assert settings.use_temperature == (command != "evaluate")
