"""dbot_mm: dBOT for the OpenMMLab stack.

Importing the package (e.g. through a config's
``custom_imports=dict(imports=['dbot_mm'])``) first applies the compatibility
fixes for the pinned stack, then registers every component into the
mmpretrain (and, when installed, mmdet / mmseg) registries.
"""
from .version import __version__
from . import compat  # noqa: F401  (must run before anything loads a ckpt)
from . import datasets, engine, models  # noqa: F401

__all__ = ['__version__']
