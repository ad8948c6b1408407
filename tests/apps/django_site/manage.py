#!/usr/bin/env python
"""Django's command-line utility for the launch-path test site:
``python tests/apps/django_site/manage.py runserver 127.0.0.1:PORT``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

if __name__ == "__main__":
    # The project root, so that ``tests.apps.django_site`` imports without PYTHONPATH too.
    root = str(Path(__file__).resolve().parents[3])
    if root not in sys.path:
        sys.path.insert(1, root)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.apps.django_site.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
