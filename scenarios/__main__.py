"""``python -m scenarios``: see :mod:`scenarios.cli`."""

import sys

from .cli import main

sys.exit(main())
