"""One prepared GPU run: every figure that needs a GPU, from one command, inside a time budget.

    python3 benchmarks/gpu_suite.py --out $OUT                    # on the GPU machine
    python benchmarks/gpu_suite.py --smoke --out /tmp/gpu-suite   # the same steps on a CPU, tiny settings

The entry point of the ``gpu`` package beside this file (``--help`` and ``benchmarks/gpu/cli.py``
say what it runs); every task's process is started from here too.
"""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO / "benchmarks")]  # the code beside this file, never an installed copy

from gpu.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
