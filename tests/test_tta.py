"""Test-time augmentation: the 8 dihedral views, averaged probabilities, maps turned back."""

from __future__ import annotations

import pytest
import torch

from attnmel.inference import Predictor, probabilities_from_logits
from attnmel.inference.tta import NUM_VIEWS, dihedral_view, undo_view, view_indices

from .checkpoint_helpers import make_checkpoint, network_of


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = make_checkpoint(tmp_path_factory.mktemp("tta") / "model.safetensors")
    return network_of(path)[0]


def _explicit_views(x: torch.Tensor) -> list[torch.Tensor]:
    """The dihedral group written out by hand: identity, three turns, the two flips, the two transposes."""
    t = x.transpose(-2, -1)
    return [x, x.flip(-1).transpose(-2, -1), x.flip(-1).flip(-2), t.flip(-1),      # rotations 0, 90, 180, 270
            x.flip(-1), x.flip(-2), t, t.flip(-1).flip(-2)]                         # mirrors and transposes


def test_views_are_the_dihedral_group_and_undo_inverts_them():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    views = [dihedral_view(x, i) for i in range(NUM_VIEWS)]
    assert torch.equal(views[0], x)
    expected = _explicit_views(x)
    for view in views:
        assert sum(torch.equal(view, e) for e in expected) == 1
    for i, view in enumerate(views):
        assert torch.equal(undo_view(view, i), x)
    rectangular = torch.randn(1, 1, 3, 5)
    for i in range(NUM_VIEWS):
        assert torch.equal(undo_view(dihedral_view(rectangular, i), i), rectangular)
    assert list(view_indices(False)) == [0] and len(view_indices(True)) == 8
    with pytest.raises(ValueError):
        dihedral_view(x, 8)


def test_tta_is_the_mean_over_the_eight_rotated_inputs(model):
    x = torch.randn(3, 3, 64, 64)
    probabilities, attention = Predictor([model], tta=True)(x)
    with torch.no_grad():
        outputs = [model(v) for v in _explicit_views(x)]
    expected = torch.stack([probabilities_from_logits(o.logits) for o in outputs]).mean(0)
    torch.testing.assert_close(probabilities, expected, atol=1e-6, rtol=1e-5)
    assert not torch.allclose(probabilities, probabilities_from_logits(outputs[0].logits), atol=1e-4)
    assert list(attention) == ["stage3", "stage4"] and attention["stage3"].shape == (3, 1, 8, 8)


def test_tta_is_invariant_to_rotating_and_flipping_the_input(model):
    x = torch.randn(2, 3, 64, 64)
    plain = Predictor([model])
    tta = Predictor([model], tta=True)
    turned = torch.rot90(x, 1, dims=(-2, -1))
    # without TTA the model is not invariant, so the check below is not vacuous
    assert (plain(x)[0] - plain(turned)[0]).abs().max() > 1e-3
    p, maps = tta(x)
    for transform in (lambda t: torch.rot90(t, 1, dims=(-2, -1)), lambda t: t.flip(-1), lambda t: t.transpose(-2, -1)):
        q, maps_q = tta(transform(x))
        torch.testing.assert_close(q, p, atol=1e-5, rtol=1e-4)
        for name in maps:  # maps turn with the image
            torch.testing.assert_close(maps_q[name], transform(maps[name]), atol=1e-5, rtol=1e-4)


def test_temperature_is_applied_per_view(model):
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        logits = [model(v).logits for v in _explicit_views(x)]
    expected = torch.stack([torch.softmax(z / 2.5, dim=1) for z in logits]).mean(0)
    torch.testing.assert_close(Predictor([model], [2.5], tta=True)(x)[0], expected, atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError):
        probabilities_from_logits(logits[0], 0.0)
