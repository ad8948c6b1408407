"""Management commands of the ``healthprobe.django`` app."""
