"""Every block of docs/frameworks/django.md is one a test reads: the project, its commands,
transcripts, log excerpts and manifests in tests/test_django.py, the groups and the guard in
tests/test_framework_groups.py."""

from __future__ import annotations

from . import doc_pages

PAGE = doc_pages.page("frameworks/django.md")


def test_every_block_of_the_page_is_read_by_a_test() -> None:
    """A block added to the page, of any language, fails here until a test reads it."""
    files = doc_pages.files(PAGE)
    read = [
        # tests/test_django.py::test_every_command_of_the_pages_is_run_here (the install
        # line's extras exist)
        doc_pages.block(PAGE, "sh", contains="healthprobe["),
        # tests/test_django.py, the site fixture: startproject, the settings block added to
        # what it wrote, and the page's three files
        doc_pages.block(PAGE, "console", starts="$ django-admin startproject"),
        doc_pages.block(PAGE, "python", starts="# mysite/settings.py: add at the end\n"),
        files["mysite/wsgi.py"],
        files["mysite/asgi.py"],
        files["mysite/health.py"],
        # tests/test_django.py::test_gunicorn_from_unmigrated_to_ready_then_graceful_stop:
        # check, migrate and gunicorn, the curl lines before and after migrate, and the log
        # line of the startup probe before migrate (MIGRATIONS_LOG)
        doc_pages.block(PAGE, "console", starts="$ python manage.py check"),
        doc_pages.block(PAGE, "console", contains="%{http_code}"),
        doc_pages.block(PAGE, "console", starts="$ curl -s localhost:8000/startupz"),
        doc_pages.block(PAGE, "text", contains="check migrations: fail"),
        # tests/test_django.py::test_uvicorn_asgi
        doc_pages.block(PAGE, "console", starts="$ uvicorn "),
        # tests/test_django.py::test_missing_database_fails_readiness_not_liveness
        doc_pages.block(PAGE, "console", contains="$ curl -s localhost:8000/livez"),
        doc_pages.block(PAGE, "console", starts="$ POSTGRES_DB=nowhere "),
        # tests/test_django.py::test_exec_probe_command_and_the_kubernetes_block
        doc_pages.block(PAGE, "console", starts="$ python manage.py healthprobe readiness\n"),
        doc_pages.block(PAGE, "yaml", starts="apiVersion: apps/v1\n"),
        doc_pages.block(PAGE, "yaml", starts="startupProbe:\n"),
        # tests/test_django.py::test_checks_in_code
        doc_pages.block(PAGE, "python", contains="registry().add_check("),
        # tests/test_framework_groups.py::test_django_page_groups_and_the_guard
        doc_pages.block(PAGE, "python", starts="# mysite/health.py, beside"),
        doc_pages.block(PAGE, "python", starts="# mysite/settings.py, after the HEALTHPROBE"),
        doc_pages.block(PAGE, "console", contains="/health/wellness"),
        # tests/test_django.py::test_bad_settings_are_reported_with_their_ids
        doc_pages.block(PAGE, "text", contains="(healthprobe.E002)"),
        # tests/test_django.py::test_an_application_that_is_not_wrapped_warns (UNWRAPPED_LOG)
        doc_pages.block(PAGE, "text", contains="healthprobe.W001:"),
    ]
    assert sorted(doc_pages.blocks(PAGE)) == sorted(read)
