"""``manage.py healthprobe``: see :mod:`.healthprobe`."""

__all__: list[str] = []
