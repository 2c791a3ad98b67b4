"""Invalid public arguments are one ``ConfigError`` naming the argument, never a silent answer (issue 20)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from attnmel.arguments import RULES, check_arguments
from attnmel.errors import ConfigError

BAD = [
    ("threshold", math.nan), ("threshold", -0.1), ("threshold", 1.5), ("threshold", "0.5"), ("threshold", math.inf),
    ("batch_size", -1), ("batch_size", 0), ("batch_size", 2.5), ("batch_size", True),
    ("num_workers", -1), ("mask_threshold", math.nan), ("calibration_bins", 0), ("tta", "yes"),
]


@pytest.mark.parametrize(("name", "value"), BAD)
def test_each_rule_names_the_argument(name, value):
    with pytest.raises(ConfigError, match=f"^{name}="):
        check_arguments(**{name: value})


def test_good_values_pass():
    check_arguments(threshold=None, batch_size=np.int64(4), num_workers=0, mask_threshold=np.float32(0.5),
                    calibration_bins=15, tta=None)
    assert set(RULES) >= {"threshold", "batch_size", "num_workers"}


@pytest.fixture(scope="module")
def loaded(tiny_checkpoint):
    from attnmel.inference import load_model

    return load_model(tiny_checkpoint, device="cpu")


@pytest.mark.parametrize(("options", "named"), [
    ({"threshold": math.nan}, "threshold"),  # labelled everything "other"
    ({"batch_size": -1}, "batch_size"),  # returned 0 results for 2 images
    ({"batch_size": 0}, "batch_size"),
])
def test_predict_refuses_instead_of_answering(loaded, options, named):
    image = np.full((64, 64, 3), 128, np.uint8)
    with pytest.raises(ConfigError, match=f"^{named}="):
        loaded.predict([image, image], **options)


def test_library_doors_check_their_arguments(tiny_checkpoint, tmp_path):
    from attnmel.inference import InferenceSettings

    with pytest.raises(ConfigError, match="^threshold="):
        InferenceSettings(threshold=math.nan)
    with pytest.raises(ConfigError, match="^batch_size="):
        InferenceSettings(batch_size=-1)
    with pytest.raises(ConfigError, match="^num_workers="):
        InferenceSettings(workers=-2)
    assert not (tmp_path / "e").exists() and not (tmp_path / "p").exists()  # refused before any work


def test_the_cli_and_the_library_share_the_threshold_rule(capsys):
    from attnmel.cli import main

    assert main(["evaluate", "--data", "x", "--threshold", "nan"]) == 2
    assert "--threshold: must be a number in [0, 1), not 'nan'" in capsys.readouterr().err
