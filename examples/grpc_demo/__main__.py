"""``python -m examples.grpc_demo``: see the package docstring."""

from __future__ import annotations

import sys

from .service import main

if __name__ == "__main__":
    sys.exit(main())
