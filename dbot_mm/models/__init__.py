from . import algorithms, backbones, heads, necks, targets  # noqa: F401
