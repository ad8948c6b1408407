"""URL configuration of the in-process Django project used by the benchmarks."""

from django.urls import path
from health_check.views import HealthCheckView

urlpatterns = [path("livez", HealthCheckView.as_view(checks=[]))]
