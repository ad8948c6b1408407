"""``manage.py healthprobe``: see :mod:`.healthprobe`."""
