"""``python -m attnmel`` (and ``torchrun -m attnmel``) run the command line."""

import sys

from attnmel.cli import main

sys.exit(main())
