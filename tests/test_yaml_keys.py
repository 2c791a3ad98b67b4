"""A key given twice in a config YAML is an error naming both lines (issue 20), at any depth."""

from __future__ import annotations

import pytest

from attnmel.config import load_config, preset_root
from attnmel.errors import ConfigError


@pytest.mark.parametrize(("text", "key", "lines"), [
    ("extends: isic2017/attnmel-lesion\ntrain:\n  lr: 0.01\ntrain:\n  epochs: 3\n", "train", "lines 2 and 4"),
    ("extends: isic2017/attnmel-lesion\ntrain:\n  epochs: 3\n  lr: 0.01\n  epochs: 30\n", "epochs", "lines 3 and 5"),
])
def test_a_repeated_key_is_an_error(tmp_path, text, key, lines):
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=f"key '{key}' appears twice \\({lines}\\)") as caught:
        load_config(str(path))
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_distinct_keys_and_anchors_still_load(tmp_path):
    path = tmp_path / "mine.yaml"
    preset = preset_root() / "isic2017" / "attnmel-lesion.yaml"
    path.write_text(f"extends: {preset}\ntrain:\n  epochs: &n 3\n  eval_batch_size: 8\noptim:\n  lr: 0.01\n")
    assert load_config(str(path)).train.epochs == 3
