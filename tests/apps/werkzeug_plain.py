"""The WSGI app of the shutdown tests served by Werkzeug's ``make_server(...).serve_forever()``
called directly, without healthprobe's integration: ``python -m tests.apps.werkzeug_plain
PORT``. healthprobe must warn that this cannot shut down gracefully and name
``healthprobe.servers.werkzeug.serve``."""

from __future__ import annotations

import sys

from werkzeug.serving import make_server

from .shutdown_wsgi import app

if __name__ == "__main__":
    make_server("127.0.0.1", int(sys.argv[1]), app, threaded=True).serve_forever()
