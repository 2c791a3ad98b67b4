"""attnmel: interpretable melanoma recognition from dermoscopy images with learned visual attention."""

from attnmel.models import LogitsOnly, ModelOutput, create_model, list_backbones, list_models

__version__ = "0.1.0"

__all__ = ["LogitsOnly", "ModelOutput", "__version__", "create_model", "list_backbones", "list_models"]
