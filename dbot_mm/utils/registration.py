"""Register one class into mmpretrain's registry and, where they are
installed, mmdet's and mmseg's, so a config of any of the three toolboxes
finds it by name after ``custom_imports=['dbot_mm']``."""
import importlib
import warnings


def register_everywhere(cls, registry_name: str):
    """``registry_name`` is the attribute of ``<scope>.registry``, e.g.
    ``'MODELS'``; a toolbox that is absent is skipped, one that fails to
    import is skipped with a warning (``import dbot_mm`` must not fail)."""
    getattr(importlib.import_module('mmpretrain.registry'),
            registry_name).register_module(module=cls)
    for scope in ('mmdet', 'mmseg'):
        try:
            registry = getattr(
                importlib.import_module(f'{scope}.registry'), registry_name)
        except ImportError:
            continue
        except Exception as e:  # e.g. mmdet refusing this mmcv version
            warnings.warn(f'dbot_mm: {cls.__name__} not registered in '
                          f'{scope} ({type(e).__name__}: {e})')
            continue
        if registry.module_dict.get(cls.__name__) is not cls:
            registry.register_module(module=cls)
    return cls
