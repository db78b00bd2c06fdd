"""Distillation decoder of dBOT.

Same as MAE's decoder except for what it predicts: teacher features of the
teacher's width instead of pixels, and the cls token too (dBOT's loss counts
it), so unlike mmpretrain's ``MAEPretrainDecoder`` the cls token is kept.
"""
from typing import List, Optional, Union

import numpy as np
import torch
from mmengine.model import ModuleList
from mmpretrain.models.backbones.vision_transformer import \
    TransformerEncoderLayer
from mmpretrain.models.necks import MAEPretrainDecoder
from mmpretrain.registry import MODELS

from ..backbones.dbot_vit import run_blocks, use_fast_attention


@MODELS.register_module()
class DBOTDecoder(MAEPretrainDecoder):
    """Mask tokens + fixed 2-D sin-cos pos embed + transformer blocks.

    Args:
        num_patches (int): Patches per image (a square number).
            Defaults to 196.
        embed_dim (int): Student encoder width. Defaults to 768.
        predict_dim (int, optional): Output width, i.e. the teacher's width.
            Defaults to ``embed_dim`` (the official self-distillation case);
            ``DBOT`` fills it from its teacher when left out of the config.
        decoder_embed_dim (int): Defaults to 512.
        decoder_depth (int): Defaults to 8.
        decoder_num_heads (int): Defaults to 16.
        mlp_ratio (float): Defaults to 4.
        drop_path_rate (float): Stochastic depth over the decoder blocks. The
            official code reuses the student's rate (``sdpr``) here.
            Defaults to 0.
        norm_cfg (dict): Defaults to LayerNorm with eps 1e-6.
        with_cp (bool): Activation checkpointing of the decoder blocks (see
            ``DBOTViT``). Defaults to False.
        init_cfg (dict | list, optional): Defaults to None.
    """

    def __init__(self,
                 num_patches: int = 196,
                 embed_dim: int = 768,
                 predict_dim: Optional[int] = None,
                 decoder_embed_dim: int = 512,
                 decoder_depth: int = 8,
                 decoder_num_heads: int = 16,
                 mlp_ratio: float = 4.,
                 drop_path_rate: float = 0.,
                 norm_cfg: dict = dict(type='LN', eps=1e-6),
                 with_cp: bool = False,
                 init_cfg: Optional[Union[List[dict], dict]] = None) -> None:
        side = int(round(num_patches**.5))
        if side * side != num_patches:
            raise ValueError(f'num_patches={num_patches} is not a square; '
                             f'the sin-cos pos embed needs a square grid.')
        predict_dim = embed_dim if predict_dim is None else predict_dim
        super().__init__(
            num_patches=num_patches,
            embed_dim=embed_dim,
            decoder_embed_dim=decoder_embed_dim,
            decoder_depth=decoder_depth,
            decoder_num_heads=decoder_num_heads,
            mlp_ratio=mlp_ratio,
            norm_cfg=norm_cfg,
            predict_feature_dim=predict_dim,
            init_cfg=init_cfg)
        self.embed_dim = embed_dim
        self.predict_dim = predict_dim
        self.with_cp = with_cp
        if drop_path_rate > 0:
            # The parent builds its blocks without drop path.
            rates = np.linspace(0, drop_path_rate, decoder_depth)
            self.decoder_blocks = ModuleList([
                TransformerEncoderLayer(
                    decoder_embed_dim,
                    decoder_num_heads,
                    int(mlp_ratio * decoder_embed_dim),
                    drop_path_rate=float(rate),
                    qkv_bias=True,
                    norm_cfg=norm_cfg) for rate in rates
            ])
        use_fast_attention(self)

    def forward(self, x: torch.Tensor,
                ids_restore: torch.Tensor) -> torch.Tensor:
        """Predict teacher tokens for every position.

        Args:
            x: encoder output (B, 1 + K, embed_dim), cls first.
            ids_restore: (B, L) permutation back to image order.

        Returns:
            (B, 1 + L, predict_dim), cls first.
        """
        x = self.decoder_embed(x)
        B, _, C = x.shape
        cls, visible = x[:, :1], x[:, 1:]
        num_masked = ids_restore.shape[1] - visible.shape[1]
        patches = torch.cat(
            [visible, self.mask_token.expand(B, num_masked, C)], dim=1)
        patches = torch.gather(
            patches, 1, ids_restore.unsqueeze(-1).expand(-1, -1, C))
        x = torch.cat([cls, patches], dim=1) + self.decoder_pos_embed
        x = run_blocks(self.decoder_blocks, x, self.with_cp and self.training)
        return self.decoder_pred(self.decoder_norm(x))
