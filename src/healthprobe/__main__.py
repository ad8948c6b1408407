"""``python -m healthprobe``: the same as the ``healthprobe`` command."""

import sys

from .cli import main

sys.exit(main())
