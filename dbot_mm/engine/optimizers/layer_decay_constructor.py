"""Layer-wise learning-rate decay for a ViT backbone inside any model.

mmpretrain's constructor needs ``model.get_layer_depth`` (ImageClassifier
only), mmdet's is ConvNeXt-only and mmseg's keys on class names containing
BEiT / MAE. This one asks the model's ``backbone`` for the depth of each of
its parameters, so the same rule holds in ImageClassifier, CascadeRCNN and
EncoderDecoder:

    lr = base_lr * rate ** (num_layers + 1 - layer_id)

with patch embedding / cls token / position embedding at layer 0, block ``i``
at ``i + 1`` and everything else (final norm, adapter, necks, heads) at
``num_layers + 1``. Norms, biases, 1-D parameters (layer scale), position
embeddings, tokens and relative-position tables get no weight decay.
"""
from functools import partial

from mmpretrain.engine.optimizers import \
    LearningRateDecayOptimWrapperConstructor

from ...utils.registration import register_everywhere

__all__ = ['LayerDecayOptimWrapperConstructor', 'layer_decay_adamw']

NO_DECAY_KEYS = ('pos_embed', 'cls_token', 'mask_token',
                 'relative_position_bias_table')


class LayerDecayOptimWrapperConstructor(
        LearningRateDecayOptimWrapperConstructor):
    """Layer-wise LR decay driven by ``model.backbone.get_layer_depth``.

    ``paramwise_cfg``:

    - ``layer_decay_rate`` (float, required): the per-layer factor.
    - ``norm_decay_mult`` / ``bias_decay_mult`` / ``flat_decay_mult``:
      default 0 (no decay on norms, biases and 1-D parameters).
    - ``custom_keys``: merged over ``{key: dict(decay_mult=0.)}`` for
      ``pos_embed``, ``cls_token``, ``mask_token`` and
      ``relative_position_bias_table``; substring match on parameter names.

    Each parameter becomes one group carrying ``lr``, ``lr_scale``,
    ``layer_id``, ``param_name`` and ``weight_decay`` (mmpretrain's layout),
    and frozen parameters are left out.
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: dict = None):
        paramwise_cfg = dict(paramwise_cfg or {})
        if 'layer_decay_rate' not in paramwise_cfg:
            raise ValueError('paramwise_cfg.layer_decay_rate is required')
        for key in ('norm_decay_mult', 'bias_decay_mult', 'flat_decay_mult'):
            paramwise_cfg.setdefault(key, 0.)
        custom_keys = {k: dict(decay_mult=0.) for k in NO_DECAY_KEYS}
        custom_keys.update(paramwise_cfg.get('custom_keys', {}))
        paramwise_cfg['custom_keys'] = custom_keys
        super().__init__(optim_wrapper_cfg, paramwise_cfg)

    def add_params(self, params, module, prefix='', get_layer_depth=None,
                   **kwargs):
        if prefix == '' and get_layer_depth is None:
            get_layer_depth = self._layer_depth_fn(module)
        super().add_params(
            params, module, prefix=prefix, get_layer_depth=get_layer_depth,
            **kwargs)

    @staticmethod
    def _layer_depth_fn(model):
        backbone = getattr(model, 'backbone', None)
        if backbone is not None and hasattr(backbone, 'get_layer_depth'):
            return partial(backbone.get_layer_depth, prefix='backbone.')
        if hasattr(model, 'get_layer_depth'):
            return model.get_layer_depth
        raise TypeError(
            f'{type(model).__name__} has no backbone with get_layer_depth '
            '(e.g. dbot_mm ViTDense / mmpretrain VisionTransformer); '
            'layer-wise LR decay does not know its layers.')


register_everywhere(LayerDecayOptimWrapperConstructor,
                    'OPTIM_WRAPPER_CONSTRUCTORS')


def layer_decay_adamw(layer_decay_rate: float, lr: float = 1e-4) -> dict:
    """``optim_wrapper`` of the det / seg fine-tunes (official recipe): AMP,
    AdamW (0.9, 0.999) with weight decay 0.05, this constructor. It
    replaces the base's wrapper as a whole (``_delete_``)."""
    return dict(
        _delete_=True,
        type='AmpOptimWrapper',
        optimizer=dict(
            type='AdamW', lr=lr, betas=(0.9, 0.999), weight_decay=0.05),
        constructor='LayerDecayOptimWrapperConstructor',
        paramwise_cfg=dict(layer_decay_rate=layer_decay_rate))
