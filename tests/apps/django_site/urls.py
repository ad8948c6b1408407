"""URLs of the launch-path test site."""

from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [path("", views.index), path("slow", views.slow)]
