"""Config helpers: read an arch from ``configs/_base_/models/`` inside
another config, the backbone of the transfer (cls / det / seg) configs,
and the MAE baseline of a dBOT model."""
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


def vit_dense(name: str, config_dir: str, checkpoint: str,
              **overrides) -> dict:
    """``model.backbone`` of a transfer config: a ``ViTDense`` with the arch
    of the file ``name`` (as :func:`vit_arch`), initialised from the
    ``backbone.*`` weights of ``checkpoint``; ``overrides`` are its other
    arguments::

        model = dict(
            backbone=vit_dense('vit-large-p16.py', '{{ fileDirname }}',
                               pretrained, drop_path_rate=0.25),
            head=dict(in_channels=1024))
    """
    return dict(
        vit_arch(name, config_dir),
        type='ViTDense',
        init_cfg=dict(
            type='Pretrained', checkpoint=checkpoint, prefix='backbone.'),
        **overrides)


def symmetric_backbone(checkpoint: str, **overrides) -> dict:
    """``model.backbone`` overrides of a det / seg config that starts from
    a symmetric (CLIP-teacher row) student: its relative position bias and
    layer scale come from ``checkpoint``, which must bring them (only the
    adapter is new), so an asymmetric checkpoint is an error."""
    return dict(use_rel_pos_bias=True,
                layer_scale_init_value=0.1,
                pretrained_new_keys=(r'^adapter\.', ),
                init_cfg=dict(checkpoint=checkpoint),
                **overrides)
