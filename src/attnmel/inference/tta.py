"""Test-time augmentation over the 8 dihedral views: 4 quarter turns, each with and without a flip.

Dermoscopy has no canonical orientation (the paper trains with rot90 and flips), so the eight
views of an image are equally valid inputs. View ``i`` is ``rot90(flip?(x), i % 4)``, flipped
(left-right) when ``i >= 4``; view 0 is the image itself. ``undo_view`` maps an output of view
``i`` that lives on the image grid (an attention map) back to the original orientation, so maps
of the eight views can be averaged. The set of views is closed under rotation and flipping: TTA
probabilities are invariant to rotating or flipping the input, and TTA attention maps turn with it.
"""

from __future__ import annotations

import torch

NUM_VIEWS = 8
_SPATIAL = (-2, -1)


def view_indices(tta: bool) -> range:
    """The views evaluated: all eight under TTA, otherwise the image itself."""
    return range(NUM_VIEWS if tta else 1)


def dihedral_view(x: torch.Tensor, index: int) -> torch.Tensor:
    """View ``index`` (0-7) of images or maps shaped (..., H, W)."""
    if not 0 <= index < NUM_VIEWS:
        raise ValueError(f"dihedral view index must be 0-7, not {index}")
    if index >= 4:
        x = torch.flip(x, dims=(-1,))
    turns = index % 4
    return torch.rot90(x, turns, dims=_SPATIAL) if turns else x


def undo_view(y: torch.Tensor, index: int) -> torch.Tensor:
    """The inverse of ``dihedral_view``: turn back, then unflip."""
    if not 0 <= index < NUM_VIEWS:
        raise ValueError(f"dihedral view index must be 0-7, not {index}")
    turns = index % 4
    if turns:
        y = torch.rot90(y, -turns, dims=_SPATIAL)
    return torch.flip(y, dims=(-1,)) if index >= 4 else y
