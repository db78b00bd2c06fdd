"""Config helpers: read an arch from ``configs/_base_/models/`` inside
another config, derive the MAE baseline of a dBOT model."""
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


def mae_model(arch: dict, img_size: int, patch_size: int,
              decoder: dict) -> dict:
    """Return mmpretrain's pixel-target ``MAE`` with a dBOT model's encoder
    ``arch``, patch grid and decoder size (``decoder``: its neck dict).

    The baseline of a dBOT run then differs only in its target, whatever
    sizes the dBOT config sets; the init is the official MAE init, as
    DBOT's default.
    """
    return dict(
        type='MAE',
        backbone=dict(
            type='MAEViT',
            arch=arch,
            img_size=img_size,
            patch_size=patch_size,
            mask_ratio=0.75),
        neck=dict(
            type='MAEPretrainDecoder',
            num_patches=(img_size // patch_size)**2,
            patch_size=patch_size,
            in_chans=3,
            embed_dim=arch['embed_dims'],
            decoder_embed_dim=decoder['decoder_embed_dim'],
            decoder_depth=decoder['decoder_depth'],
            decoder_num_heads=decoder['decoder_num_heads'],
            mlp_ratio=4.),
        head=dict(
            type='MAEPretrainHead',
            norm_pix=True,
            patch_size=patch_size,
            loss=dict(type='PixelReconstructionLoss', criterion='L2')),
        init_cfg=[
            dict(type='Xavier', layer='Linear', distribution='uniform'),
            dict(type='Constant', layer='LayerNorm', val=1.0, bias=0.0)
        ])
