"""``python -m gpu`` from benchmarks/ is ``python benchmarks/gpu_suite.py``."""

import sys

from gpu.cli import main

sys.exit(main())
