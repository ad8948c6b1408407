"""``/`` answers ``ok <pid>`` at once; ``/slow`` answers ``slow ok <pid>`` after ``?seconds=``
(default 2.0 s).

``slow`` is an ``async def`` view: under ASGI it sleeps on the event loop (a sync view would
run in Django's one thread for sync code, one request at a time); under WSGI Django runs it
to completion in the worker's thread.
"""

from __future__ import annotations

import asyncio
import os

from django.http import HttpRequest, HttpResponse


def index(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"ok {os.getpid()}", content_type="text/plain")


async def slow(request: HttpRequest) -> HttpResponse:
    await asyncio.sleep(float(request.GET.get("seconds", "2.0")))
    return HttpResponse(f"slow ok {os.getpid()}", content_type="text/plain")
