"""Pictures of what the model looked at, in the manner of MONAI's ``monai/visualize``: attention
figures with their own scale (``figures``), Grad-CAM beside the learned attention (``gradcam``) and
the one figure per image (``image``). What a map means (kind, flatness) stays with the models
(``attnmel.models.maps``); importing this package imports matplotlib, so nothing below it does."""

from attnmel.visualize.figures import (
           Panel,
           attention_figure,
           display_scale,
           heatmap_image,
           heatmap_overlay,
           png_bytes,
)
from attnmel.visualize.gradcam import grad_cam
from attnmel.visualize.image import ImageFigure

__all__ = ["ImageFigure", "Panel", "attention_figure", "display_scale", "grad_cam", "heatmap_image",
           "heatmap_overlay", "png_bytes"]
