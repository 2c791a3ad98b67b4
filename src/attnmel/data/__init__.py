"""Data: dataset readers (official ISIC layouts, isic-cli folders, manifests), decoding, transforms."""

from attnmel.data.dataset import IsicDataset
from attnmel.data.readers import LAYOUTS, detect_layout, read_dataset
from attnmel.data.records import TASKS, DatasetIndex, Sample, Task, get_task

__all__ = ["LAYOUTS", "TASKS", "DatasetIndex", "IsicDataset", "Sample", "Task", "detect_layout", "get_task", "read_dataset"]
