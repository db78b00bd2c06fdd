"""The symmetric (BEiT-style) dBOT student of the CLIP-teacher rows.

The official ``beit`` branch (``modeling_pretrain.py``) trains a plain ViT
whose masked patch embeddings are replaced by a learned mask token before
the blocks, with one relative position bias shared by all blocks, layer
scale, no absolute position embedding, and BEiT's truncated-normal init with
the per-block rescaling of the output projections.

This is :class:`ViTDense` (mmpretrain's ViT layout) with those settings, so
a pretraining checkpoint's ``backbone.*`` loads into the cls / det / seg
configs unchanged (``use_rel_pos_bias=True``, ``layer_scale_init_value``):

* the shared bias is one :class:`RelPosBias` module attached to every
  block: its state dict lists the table under each block's name, which is
  exactly the official "copy the shared table into every block" for
  fine-tuning; the optimizer sees one parameter;
* ``use_abs_pos_emb=False`` keeps ``pos_embed`` at zero and frozen (the
  same function as having none; transfer configs load the zero table);
* the attention keeps mmpretrain's full ``qkv`` bias. The official q/v-only
  bias differs by a key bias, which adds the same logit to every key of a
  query and so cancels in the softmax (its gradient is zero).
"""
import math
from typing import Optional

import torch
from mmengine.model.weight_init import trunc_normal_
from mmpretrain.registry import MODELS
from torch import nn

from .vit_dense import ViTDense

__all__ = ['DBOTSymmetricViT']

_TABLE = 'layers.{}.attn.rel_pos_bias.relative_position_bias_table'


def _list_shared_table_per_block(module, state_dict, prefix, local_metadata):
    first = state_dict.get(prefix + _TABLE.format(0))
    if first is not None:
        for i in range(1, len(module.layers)):
            state_dict[prefix + _TABLE.format(i)] = first


def _load_shared_table(state_dict, prefix, *args, **kwargs):
    """Block 0's table is the shared one; the per-block copies are dropped."""
    first = prefix + _TABLE.format(0)
    suffix = _TABLE.split('}', 1)[1]
    for key in [k for k in state_dict if k != first and k.endswith(suffix)
                and k.startswith(prefix + 'layers.')]:
        state_dict.pop(key)


@MODELS.register_module()
class DBOTSymmetricViT(ViTDense):
    """ViT whose masked patches become a mask token inside the encoder.

    Args:
        use_abs_pos_emb (bool): Train an absolute position embedding. The
            official CLIP-teacher runs use none (``--abs_pos_emb`` off):
            the table is zeroed and frozen. Defaults to False.
        use_rel_pos_bias (bool): Relative position bias (cls included).
            Defaults to True.
        share_rel_pos_bias (bool): One bias for all blocks (official
            ``use_shared_rel_pos_bias``). Defaults to True.
        layer_scale_init_value (float): Layer scale init (official
            ``--layer_scale_init_value 0.1`` for B, L and H). Defaults to 0.1.
        final_norm (bool): LayerNorm after the last block (official
            ``self.norm`` before ``lm_head``). Defaults to True.
        init_std (float): Std of the truncated-normal init of every Linear
            / Conv2d weight and of the cls / mask tokens, truncated at
            +-``init_std`` as the official ``trunc_normal_``. Defaults to
            0.02.
        **kwargs: the rest of :class:`ViTDense` (arch, img_size,
            patch_size, drop_path_rate, with_cp, ...).
    """

    def __init__(self,
                 use_abs_pos_emb: bool = False,
                 use_rel_pos_bias: bool = True,
                 share_rel_pos_bias: bool = True,
                 layer_scale_init_value: float = 0.1,
                 final_norm: bool = True,
                 out_type: str = 'cls_token',
                 init_std: float = 0.02,
                 **kwargs) -> None:
        super().__init__(
            use_rel_pos_bias=use_rel_pos_bias,
            layer_scale_init_value=layer_scale_init_value,
            final_norm=final_norm,
            out_type=out_type,
            **kwargs)
        self.use_abs_pos_emb = use_abs_pos_emb
        self.init_std = init_std
        self.mask_token = nn.Parameter(torch.zeros(1, 1, self.embed_dims))
        if not use_abs_pos_emb:
            self.pos_embed.requires_grad_(False)
            with torch.no_grad():
                self.pos_embed.zero_()
        self.share_rel_pos_bias = use_rel_pos_bias and share_rel_pos_bias
        if self.share_rel_pos_bias:
            self._share_rel_pos_bias()

    def _share_rel_pos_bias(self) -> None:
        """Block 0's bias module serves every block.

        It is registered once (under block 0), so parameter lists and
        optimizer groups see one table; the other blocks hold a plain
        reference. The state dict lists the table under every block (the
        layout of ViTDense with per-block tables) and loading takes block
        0's copy.
        """
        shared = self.layers[0].attn.rel_pos_bias
        for layer in self.layers[1:]:
            del layer.attn.rel_pos_bias
            object.__setattr__(layer.attn, 'rel_pos_bias', shared)
        self._register_state_dict_hook(_list_shared_table_per_block)
        self._register_load_state_dict_pre_hook(_load_shared_table)

    @property
    def num_patches(self) -> int:
        return self.patch_resolution[0] * self.patch_resolution[1]

    # ------------------------------------------------------------------ init
    def init_weights(self) -> None:
        """Official BEiT init unless a ``Pretrained`` init_cfg loads weights.

        Truncated normal on Linear / Conv2d weights, zero biases, unit
        LayerNorms, normal cls / mask tokens, zero relative position tables,
        layer scale at its init value, and the output projection of block
        ``i`` (attention ``proj`` and FFN ``fc2``) divided by
        ``sqrt(2 * (i + 1))``.
        """
        if self._pretrained_cfg() is not None:
            super().init_weights()
            return
        super().init_weights()
        std = self.init_std
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                trunc_normal_(m.weight, std=std, a=-std, b=std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        trunc_normal_(self.cls_token, std=std, a=-std, b=std)
        trunc_normal_(self.mask_token, std=std, a=-std, b=std)
        with torch.no_grad():
            if not self.use_abs_pos_emb:
                self.pos_embed.zero_()
            for name, p in self.named_parameters():
                if name.endswith('relative_position_bias_table'):
                    p.zero_()
            for i, layer in enumerate(self.layers):
                scale = math.sqrt(2.0 * (i + 1))
                layer.attn.proj.weight.div_(scale)
                layer.ffn.layers[1].weight.div_(scale)

    # --------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None):
        """Masked tokens, or :class:`ViTDense`'s outputs without a mask.

        Args:
            x: images (B, 3, H, W).
            mask: (B, h, w) or (B, h * w), 1 / True = replaced by the mask
                token. None runs the plain ViT (feature extraction).

        Returns:
            (B, 1 + h * w, C) all tokens after the final norm, cls first,
            when ``mask`` is given.
        """
        if mask is None:
            return super().forward(x)
        B = x.shape[0]
        x, hw = self.patch_embed(x)
        mask = mask.reshape(B, -1)
        if mask.shape[1] != x.shape[1]:
            raise ValueError(f'mask has {mask.shape[1]} patches, the image '
                             f'{x.shape[1]} ({hw[0]} x {hw[1]})')
        w = mask.unsqueeze(-1).to(x.dtype)
        x = x * (1. - w) + self.mask_token.to(x.dtype) * w
        x = self._embed_tokens(x, hw)
        for layer in self.layers:
            x = self._apply_layer(layer, x, hw)
        if self.final_norm:
            x = self.ln1(x)
        return x
