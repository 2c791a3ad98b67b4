"""Numbers reported in the paper, kept in one place for side-by-side comparisons.

Source: Y. Yan, J. Kawahara, G. Hamarneh. Melanoma Recognition via Visual Attention. IPMI 2019.
Only the numbers below are transcribed; every other cell of a comparison reads "not reported
here". They are the paper's *test-split* results; numbers measured on a validation split are
not the same experiment and are labelled as such wherever they are shown side by side.
"""

from __future__ import annotations

from dataclasses import dataclass

CITATION = "Y. Yan, J. Kawahara, G. Hamarneh. Melanoma Recognition via Visual Attention. IPMI 2019."
NOT_REPORTED = "not reported here"


@dataclass(frozen=True)
class PaperNumber:
    #: dataset as attnmel names its layout ("isic2017", "isic2016")
    dataset: str
    split: str
    #: paper row, as the presets' ``paper_row``
    row: str
    #: "roc_auc" (melanoma vs rest) or "jaccard" (attention vs lesion mask, threshold 0.5)
    metric: str
    value: float
    #: attention layer for "jaccard" (VGG-16 pool-3 / pool-4), else None
    layer: str | None = None


PAPER_NUMBERS: tuple[PaperNumber, ...] = (
    PaperNumber("isic2017", "test", "AttnMel-CNN", "roc_auc", 0.872),
    PaperNumber("isic2017", "test", "AttnMel-CNN-Lesion", "roc_auc", 0.883),
    PaperNumber("isic2016", "test", "AttnMel-CNN", "roc_auc", 0.852),
    # Attention quality (Jaccard of the binarised, min-max-normalised map vs the lesion mask).
    PaperNumber("isic2017", "test", "AttnMel-CNN", "jaccard", 0.31, "pool3"),
    PaperNumber("isic2017", "test", "AttnMel-CNN", "jaccard", 0.32, "pool4"),
    PaperNumber("isic2017", "test", "AttnMel-CNN-Lesion", "jaccard", 0.55, "pool3"),
    PaperNumber("isic2017", "test", "AttnMel-CNN-Lesion", "jaccard", 0.66, "pool4"),
)


def paper_number(dataset: str | None, row: str | None, metric: str, layer: str | None = None) -> PaperNumber | None:
    """The paper's number for this dataset, row, metric (and layer), or None when it reports none."""
    for number in PAPER_NUMBERS:
        if (number.dataset, number.row, number.metric, number.layer) == (dataset, row, metric, layer):
            return number
    return None
