"""Management commands of the ``healthprobe.django`` app."""

__all__: list[str] = []
