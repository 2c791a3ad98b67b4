"""Training: the ``Trainer`` (``loop``; ``loop.train`` is the one entry point of ``attnmel train``),
the resume policy (``resume``), focal loss and the Dice attention prior (``losses``), optimisers and
schedules (``optim``), EMA of the weights (``ema``) and DDP under ``torchrun`` (``distributed``).
Nothing is imported here, so importing one module does not import the others."""
