"""The HTTP service: a thin door onto the library (``attnmel serve``).

``model.py`` holds the served model and turns one image into the response body; ``batching.py``
groups concurrent requests into one forward pass; ``uploads.py`` reads request bodies within a
size limit and never writes them to disk; ``protocol.py`` puts a deadline on request headers;
``app.py`` wires these into FastAPI; ``static/`` is the page served at ``/``. Without a checkpoint
the service answers with the model shipped inside attnmel (``attnmel.checkpoints.pretrained``).
"""

from attnmel.serving.app import ServiceSettings, create_app, serve
from attnmel.serving.model import ServedModel

__all__ = ["ServedModel", "ServiceSettings", "create_app", "serve"]
