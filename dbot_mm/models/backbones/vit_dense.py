"""One ViT for every transfer task: classification, detection, segmentation.

It is mmpretrain's ``VisionTransformer`` (same parameter names as the
pretraining encoder, so a dbot_mm checkpoint loads without renames) plus what
the official dBOT det / seg code bolts on:

* multi-scale outputs: blocks ``out_indices`` -> strides 4/8/16/32 through the
  official adapter (2x deconv twice, 2x deconv, identity, max-pool);
* the absolute position embedding resized to every input size;
* optional relative position bias per block, trained from zero on top of the
  pretrained absolute embedding, and layer scale (the official seg recipe);
* drop path, activation checkpointing, frozen stages;
* pretrained loading that reports every key and fails on missing ones.

Registered in mmpretrain's MODELS and, when installed, mmdet's and mmseg's.
"""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmengine.model import ModuleList
from mmpretrain.models.backbones.beit import RelativePositionBias
from mmpretrain.models.backbones.vision_transformer import VisionTransformer
from mmpretrain.models.utils import MultiheadAttention, build_norm_layer

from ...utils.ckpt_load import load_pretrained
from .dbot_vit import with_cls_pos
from ...utils.registration import register_everywhere

__all__ = ['ViTDense', 'RelPosBias', 'RelPosAttention']


class RelPosBias(RelativePositionBias):
    """BEiT-style relative position bias (cls token included) of one block.

    Built for the patch grid ``window_size``; for another grid the table is
    resized bicubically, so slide-inference border crops and other input
    sizes work. The index is a non-persistent buffer: it is derived from the
    grid, and keeping it out of checkpoints lets them load at any grid.
    """

    def __init__(self, window_size: Sequence[int], num_heads: int):
        super().__init__(tuple(window_size), num_heads, with_cls_token=True)
        index = self.relative_position_index
        delattr(self, 'relative_position_index')
        self.register_buffer('relative_position_index', index,
                             persistent=False)
        self._index_cache = {}
        self._register_load_state_dict_pre_hook(self._resize_loaded_table)

    def forward(self, hw: Optional[Tuple[int, int]] = None) -> torch.Tensor:
        """(num_heads, 1 + H*W, 1 + H*W) bias for the patch grid ``hw``."""
        if hw is None or tuple(hw) == tuple(self.window_size):
            return super().forward()
        h, w = hw
        table = self._resized_table(self.relative_position_bias_table,
                                    self.window_size, (h, w))
        n = h * w + 1
        bias = table[self._index(h, w, table.device).view(-1)].view(n, n, -1)
        return bias.permute(2, 0, 1).contiguous()

    def _index(self, h, w, device):
        key = (h, w, str(device))
        if key not in self._index_cache:
            # Reuse mmpretrain's index construction for the new grid.
            self._index_cache[key] = RelativePositionBias(
                (h, w), 1).relative_position_index.to(device)
        return self._index_cache[key]

    @staticmethod
    def _resized_table(table, src, dst):
        """Resample the (dy, dx) grid of a table; the 3 cls entries stay."""
        if tuple(src) == tuple(dst):
            return table
        grid, extra = table[:-3], table[-3:]
        num_heads = table.shape[1]
        grid = grid.reshape(2 * src[0] - 1, 2 * src[1] - 1, num_heads)
        grid = F.interpolate(
            grid.permute(2, 0, 1)[None].float(),
            size=(2 * dst[0] - 1, 2 * dst[1] - 1),
            mode='bicubic',
            align_corners=False)[0].to(table.dtype)
        return torch.cat([grid.permute(1, 2, 0).flatten(0, 1), extra])

    def _resize_loaded_table(self, state_dict, prefix, *args, **kwargs):
        """Accept a table trained at another (square) grid."""
        key = prefix + 'relative_position_bias_table'
        table = state_dict.get(key)
        own = self.relative_position_bias_table
        if table is None or table.shape == own.shape:
            return
        side = int(round((table.shape[0] - 3)**0.5))
        if side * side + 3 != table.shape[0] or side % 2 == 0:
            return  # not a square grid: let load_state_dict report it
        src = ((side + 1) // 2, ) * 2
        state_dict[key] = self._resized_table(table, src, self.window_size)


class RelPosAttention(MultiheadAttention):
    """mmpretrain's attention (same ``qkv`` / ``proj`` keys) plus a per-block
    relative position bias added to the attention logits."""

    def __init__(self, window_size: Sequence[int], **kwargs):
        super().__init__(**kwargs)
        self.rel_pos_bias = RelPosBias(window_size, self.num_heads)

    def forward(self, x, hw: Optional[Tuple[int, int]] = None):
        B, N, _ = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads,
                                  self.head_dims).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        bias = self.rel_pos_bias(hw).to(q.dtype)[None]
        attn_drop = self.attn_drop if self.training else 0.
        x = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias, dropout_p=attn_drop)
        x = x.transpose(1, 2).reshape(B, N, self.embed_dims)
        x = self.proj(x)
        return self.out_drop(self.gamma1(self.proj_drop(x)))


def build_adapter(scale: float, dims: int, norm_cfg: dict) -> nn.Module:
    """The official ViT-to-pyramid layer for one output (``scale`` relative
    to the patch grid): x4 = deconv-norm-GELU-deconv, x2 = deconv,
    x1 = identity, x0.5 / x0.25 = max-pool."""
    if scale == 4:
        return nn.Sequential(
            nn.ConvTranspose2d(dims, dims, kernel_size=2, stride=2),
            build_norm_layer(norm_cfg, dims), nn.GELU(),
            nn.ConvTranspose2d(dims, dims, kernel_size=2, stride=2))
    if scale == 2:
        return nn.ConvTranspose2d(dims, dims, kernel_size=2, stride=2)
    if scale == 1:
        return nn.Identity()
    if scale in (0.5, 0.25):
        k = int(1 / scale)
        return nn.MaxPool2d(kernel_size=k, stride=k)
    raise ValueError(f'unsupported out_scale {scale}; use 4, 2, 1, 0.5, 0.25')


class ViTDense(VisionTransformer):
    """Vision Transformer for fine-tuning and dense prediction.

    Args:
        arch, img_size, patch_size, in_channels, drop_rate, drop_path_rate,
        qkv_bias, norm_cfg, interpolate_mode, patch_cfg, layer_cfgs,
        frozen_stages, init_cfg: as in mmpretrain ``VisionTransformer``.
        out_indices (Sequence[int] | int): blocks whose outputs are returned.
            Defaults to the last block.
        out_type (str): ``'featmap'`` (B, C, H, W) patch maps for det / seg,
            ``'avg_featmap'`` (MAE-style global pool + norm) or
            ``'cls_token'`` for classification. Defaults to ``'featmap'``.
        final_norm (bool): apply the pretraining final LayerNorm after the
            last block. The official det / seg / fine-tune code does not, so
            defaults to False.
        out_scales (Sequence[float], optional): one scale per out index
            relative to the patch grid, e.g. ``(4, 2, 1, 0.5)`` turns a /16
            ViT into strides 4, 8, 16, 32 for FPN / UperNet. None (default)
            returns the maps unchanged.
        adapter_norm_cfg (dict): norm inside the x4 adapter branch; the
            official heads use SyncBN. Defaults to ``dict(type='BN')``.
        use_rel_pos_bias (bool): add a relative position bias (from zero) to
            every block. Defaults to False.
        layer_scale_init_value (float): > 0 enables layer scale with this
            initial value (1.0 in the official seg recipe). Defaults to 0.
        with_cp (bool): activation checkpointing of the blocks in training.
        strict_pretrained (bool): raise when a ``Pretrained`` init_cfg lacks
            weights of this module other than the new ones (adapter, rel-pos,
            layer scale, global-pool norm). Defaults to True.
        pretrained_new_keys (Sequence[str], optional): regular expressions
            of this module's keys a ``Pretrained`` checkpoint may lack (they
            keep their fresh init); any other absent key is missing. None
            (default) takes :attr:`NEW_KEYS`. A checkpoint that must bring
            its relative position tables and layer scales (the symmetric
            CLIP-row students) passes the adapter pattern alone, so an
            asymmetric checkpoint is an error instead of a silent re-init.

    After ``init_weights`` with a ``Pretrained`` init_cfg,
    ``pretrained_report`` holds the key lists of
    :func:`dbot_mm.utils.ckpt_load.load_pretrained`.
    """

    #: keys a pretraining checkpoint cannot provide (regular expressions)
    NEW_KEYS = (r'^adapter\.', r'relative_position_bias_table',
                r'\.gamma[12]\.', r'^ln2\.')

    def __init__(self,
                 arch='base',
                 img_size=224,
                 patch_size=16,
                 in_channels=3,
                 out_indices=-1,
                 drop_rate=0.,
                 drop_path_rate=0.,
                 qkv_bias=True,
                 norm_cfg=dict(type='LN', eps=1e-6),
                 final_norm=False,
                 out_type='featmap',
                 frozen_stages=-1,
                 interpolate_mode='bicubic',
                 layer_scale_init_value=0.,
                 patch_cfg=dict(),
                 layer_cfgs=dict(),
                 out_scales: Optional[Sequence[float]] = None,
                 adapter_norm_cfg=dict(type='BN'),
                 use_rel_pos_bias=False,
                 with_cp=False,
                 strict_pretrained=True,
                 pretrained_new_keys: Optional[Sequence[str]] = None,
                 init_cfg=None):
        super().__init__(
            arch=arch,
            img_size=img_size,
            patch_size=patch_size,
            in_channels=in_channels,
            out_indices=list(out_indices) if isinstance(
                out_indices, Sequence) else out_indices,
            drop_rate=drop_rate,
            drop_path_rate=drop_path_rate,
            qkv_bias=qkv_bias,
            norm_cfg=norm_cfg,
            final_norm=final_norm,
            out_type=out_type,
            with_cls_token=True,
            frozen_stages=frozen_stages,
            interpolate_mode=interpolate_mode,
            layer_scale_init_value=layer_scale_init_value,
            patch_cfg=patch_cfg,
            layer_cfgs=layer_cfgs,
            init_cfg=init_cfg)
        self.with_cp = with_cp
        self.strict_pretrained = strict_pretrained
        self.pretrained_new_keys = tuple(
            self.NEW_KEYS if pretrained_new_keys is None else
            pretrained_new_keys)
        self.use_rel_pos_bias = use_rel_pos_bias
        self.pretrained_report = None

        if use_rel_pos_bias:
            # Only the attention changes, built with the settings of the one
            # it replaces; the blocks' other parts (and init) stay
            # mmpretrain's.
            for layer in self.layers:
                old = layer.attn
                layer.attn = RelPosAttention(
                    window_size=self.patch_resolution,
                    embed_dims=old.embed_dims,
                    num_heads=old.num_heads,
                    attn_drop=old.attn_drop,
                    proj_drop=old.proj_drop.p,
                    dropout_layer=dict(
                        type='DropPath',
                        drop_prob=getattr(old.out_drop, 'drop_prob', 0.)),
                    qkv_bias=old.qkv.bias is not None,
                    layer_scale_init_value=layer_scale_init_value)

        self.out_scales = None if out_scales is None else tuple(out_scales)
        if self.out_scales is not None:
            if out_type != 'featmap':
                raise ValueError('out_scales needs out_type="featmap"')
            if len(self.out_scales) != len(self.out_indices):
                raise ValueError(
                    f'{len(self.out_scales)} out_scales for '
                    f'{len(self.out_indices)} out_indices')
            self.adapter = ModuleList([
                build_adapter(s, self.embed_dims, adapter_norm_cfg)
                for s in self.out_scales
            ])

        if self.frozen_stages > 0:  # the attention may have been replaced
            self._freeze_stages()

    def init_weights(self):
        pretrained = self._pretrained_cfg()
        if pretrained is None:
            return super().init_weights()
        # Random init first (new parts keep it), then the checkpoint.
        init_cfg, self.init_cfg = self.init_cfg, None
        try:
            super().init_weights()
        finally:
            self.init_cfg = init_cfg
        self.pretrained_report = load_pretrained(
            self,
            pretrained['checkpoint'],
            prefix=pretrained.get('prefix'),
            new_keys=self.pretrained_new_keys,
            strict=self.strict_pretrained,
            map_location=pretrained.get('map_location', 'cpu'))
        if hasattr(self, '_params_init_info'):
            from mmengine.model.weight_init import update_init_info
            update_init_info(
                self, init_info=f'loaded from {pretrained["checkpoint"]}')

    def _pretrained_cfg(self) -> Optional[dict]:
        cfgs = self.init_cfg if isinstance(self.init_cfg, list) else [
            self.init_cfg
        ]
        for cfg in cfgs:
            if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
                if len(cfgs) > 1:
                    raise ValueError('ViTDense: give the Pretrained init_cfg '
                                     'alone (it loads after random init).')
                return cfg
        return None

    def train(self, mode: bool = True):
        """Keep frozen stages in eval mode (no dropout / drop path there)."""
        super().train(mode)
        if mode and self.frozen_stages > 0:
            self.drop_after_pos.eval()
            self.patch_embed.eval()
            for layer in self.layers[:self.frozen_stages]:
                layer.eval()
        return self

    def _run_layer(self, layer, x, hw):
        if isinstance(layer.attn, RelPosAttention):
            x = x + layer.attn(layer.ln1(x), hw)
            return layer.ffn(layer.ln2(x), identity=x)
        return layer(x)

    def _apply_layer(self, layer, x, hw):
        """One block, activation-checkpointed when ``with_cp`` in training."""
        if self.with_cp and self.training and x.requires_grad:
            return cp.checkpoint(
                self._run_layer, layer, x, hw, use_reentrant=False)
        return self._run_layer(layer, x, hw)

    def _embed_tokens(self, x, hw):
        """Patch tokens (B, h * w, C) -> cls + position embedding (resized
        to ``hw``), dropout and pre-norm: the input of the first block."""
        x = with_cls_pos(self, x, hw)
        return self.pre_norm(self.drop_after_pos(x))

    def forward(self, x):
        x, hw = self.patch_embed(x)
        x = self._embed_tokens(x, hw)

        outs = []
        for i, layer in enumerate(self.layers):
            x = self._apply_layer(layer, x, hw)
            if i == len(self.layers) - 1 and self.final_norm:
                x = self.ln1(x)
            if i in self.out_indices:
                outs.append(self._format_output(x, hw))

        if self.out_scales is not None:
            outs = [up(o.contiguous()) for up, o in zip(self.adapter, outs)]
        return tuple(outs)


register_everywhere(ViTDense, 'MODELS')
