"""``python -m secure_fal``: the ``secure-fal`` command line."""

import sys

from .cli import main

sys.exit(main())
