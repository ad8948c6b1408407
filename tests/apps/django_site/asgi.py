"""ASGI entry point: ``uvicorn tests.apps.django_site.asgi:application``.

Django's ASGI handler serves HTTP only: it refuses the lifespan scope (uvicorn's default
``--lifespan auto`` then carries on without lifespan).
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.apps.django_site.settings")

from healthprobe.django import get_asgi_application

application = get_asgi_application()
