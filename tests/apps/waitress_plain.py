"""The Flask app served by ``waitress.serve`` called directly, without healthprobe's
integration: ``python -m tests.apps.waitress_plain PORT``. healthprobe must warn that this
cannot shut down gracefully and name ``healthprobe.servers.waitress.serve``."""

from __future__ import annotations

import sys

import waitress

from .flask_app import app

if __name__ == "__main__":
    waitress.serve(app, listen=f"127.0.0.1:{int(sys.argv[1])}", threads=4)
