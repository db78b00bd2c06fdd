"""Read an arch from ``configs/_base_/models/`` inside another config."""
from pathlib import Path


def vit_arch(name: str, config_dir: str) -> dict:
    """Return ``model.backbone`` of the arch file ``name`` (e.g.
    ``'vit-large-p16.py'``: ``arch``, ``patch_size``).

    The arch of every ViT is written once, in ``configs/_base_/models/``. A
    config that inherits a ``model`` from another base cannot list an arch
    file as a second base (mmengine refuses two bases that define the same
    key), so it reads the arch with this function::

        from dbot_mm.utils.config_arch import vit_arch  # noqa: E402
        model = dict(backbone=dict(
            vit_arch('vit-large-p16.py', '{{ fileDirname }}'), ...))

    Args:
        name (str): File name in ``_base_/models/``.
        config_dir (str): Directory of the calling config
            (``'{{ fileDirname }}'``, which mmengine fills in); the first
            ``_base_/models/<name>`` found in it or a directory above it is
            read.
    """
    from mmengine.config import Config
    start = Path(config_dir).resolve()
    for folder in (start, *start.parents):
        path = folder / '_base_' / 'models' / name
        if path.is_file():
            return Config.fromfile(str(path)).model.backbone
    raise FileNotFoundError(
        f'no _base_/models/{name} in {start} or a directory above it')
