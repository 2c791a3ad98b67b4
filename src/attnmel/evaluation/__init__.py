"""Evaluation: metrics files, attention quality, calibration, reports and the paper's numbers for
checkpoints on a dataset split. It reads checkpoints through ``attnmel.inference`` and never
imports ``attnmel.training``."""
