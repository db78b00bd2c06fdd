"""Student encoder for dBOT pre-training.

mmpretrain's ``MAEViT`` draws its masking noise internally, so two runs (or
two implementations) can never be compared on the same mask. ``DBOTViT``
only adds an optional ``noise`` input and clear errors on bad image sizes; the
parameter layout stays that of ``MAEViT`` so checkpoints stay interchangeable
with mmpretrain's MAE and with the teacher.
"""
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmpretrain.models.selfsup.mae import MAEViT
from mmpretrain.models.utils import MultiheadAttention, resize_pos_embed
from mmpretrain.models.utils import attention as mmpretrain_attention
from mmpretrain.registry import MODELS
from torch import nn
from torch.utils.checkpoint import checkpoint


def to_pair(value) -> Tuple[int, int]:
    if isinstance(value, int):
        return value, value
    value = tuple(value)
    if len(value) != 2:
        raise ValueError(f'expected an int or a pair, got {value!r}')
    return int(value[0]), int(value[1])


def check_patch_grid(img_size, patch_size, owner: str) -> Tuple[int, int]:
    """Fail early instead of letting mmcv's PatchEmbed pad silently.

    The fixed sin-cos tables and the token count shared by student, decoder
    and teacher all assume a square grid of whole patches.
    """
    (h, w), (ph, pw) = to_pair(img_size), to_pair(patch_size)
    if h % ph or w % pw:
        raise ValueError(
            f'{owner}: img_size={img_size} is not divisible by '
            f'patch_size={patch_size}; choose an img_size that is a '
            f'multiple of patch_size.')
    grid = (h // ph, w // pw)
    if grid[0] != grid[1]:
        raise ValueError(
            f'{owner}: img_size={img_size} with patch_size={patch_size} '
            f'gives a {grid[0]}x{grid[1]} patch grid; the fixed 2-D sin-cos '
            f'position embedding needs a square grid.')
    return grid


def attention(q: torch.Tensor,
              k: torch.Tensor,
              v: torch.Tensor,
              dropout_p: float = 0.) -> torch.Tensor:
    """Fused SDPA, except bf16 on CPU: matmul - softmax - matmul there.

    torch's CPU flash-attention kernel is slower in bf16 than in fp32 (about
    2x slower forward + backward at ViT shapes on AVX512-BF16), while bf16
    matmuls run 2-2.5x faster than fp32 ones; the unfused form is about 2x
    faster there. fp32 and GPU inputs take the fused kernel exactly as
    mmpretrain does, so their numbers do not change.
    """
    if q.dtype == torch.bfloat16 and q.device.type == 'cpu' \
            and dropout_p == 0.:
        scores = (q * q.shape[-1]**-0.5) @ k.transpose(-2, -1)
        return scores.softmax(dim=-1) @ v
    return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)


def use_fast_attention(module: nn.Module) -> nn.Module:
    """Point mmpretrain's attention layers in ``module`` at :func:`attention`.

    Only layers on mmpretrain's default fused path are switched (a custom
    ``qk_scale`` keeps its own implementation).
    """
    for m in module.modules():
        if isinstance(m, MultiheadAttention) and \
                m.scaled_dot_product_attention is \
                mmpretrain_attention.scaled_dot_product_attention:
            m.scaled_dot_product_attention = attention
    return module


def with_cls_pos(vit: nn.Module, patches: torch.Tensor,
                 grid: Sequence[int]) -> torch.Tensor:
    """Patch tokens (B, h * w, C) of an mmpretrain ViT -> its cls token
    first, plus the position table resized to ``grid``: the tokens that
    enter the first block (as ``VisionTransformer.forward``)."""
    x = torch.cat([vit.cls_token.expand(patches.shape[0], -1, -1), patches],
                  dim=1)
    return x + resize_pos_embed(
        vit.pos_embed,
        vit.patch_resolution,
        grid,
        mode=vit.interpolate_mode,
        num_extra_tokens=vit.num_extra_tokens)


def run_blocks(blocks, x: torch.Tensor, with_cp: bool) -> torch.Tensor:
    """Apply ``blocks`` in turn, optionally under activation checkpointing.

    Non-reentrant checkpointing restores the RNG state for the recompute, so
    drop path (and dropout) give bit-identical results either way.
    """
    for block in blocks:
        if with_cp and x.requires_grad:
            x = checkpoint(block, x, use_reentrant=False)
        else:
            x = block(x)
    return x


@MODELS.register_module()
class DBOTViT(MAEViT):
    """MAE-style ViT that encodes only the visible patches.

    Args:
        arch, img_size, patch_size, drop_path_rate, norm_cfg, final_norm,
        out_type, interpolate_mode, patch_cfg, layer_cfgs, init_cfg: as in
            mmpretrain ``MAEViT``.
        mask_ratio (float): Share of patches hidden from the encoder.
            Defaults to 0.75.
        with_cp (bool): Recompute each block in the backward pass instead of
            keeping its activations (less memory, about one more forward of
            compute). Drop path draws the same masks both times, so the
            numbers do not change. Defaults to False.
    """

    def __init__(self,
                 arch: Union[str, dict] = 'b',
                 img_size: int = 224,
                 patch_size: int = 16,
                 out_indices: Union[Sequence, int] = -1,
                 drop_rate: float = 0.,
                 drop_path_rate: float = 0.,
                 norm_cfg: dict = dict(type='LN', eps=1e-6),
                 final_norm: bool = True,
                 out_type: str = 'raw',
                 interpolate_mode: str = 'bicubic',
                 patch_cfg: dict = dict(),
                 layer_cfgs: dict = dict(),
                 mask_ratio: float = 0.75,
                 with_cp: bool = False,
                 init_cfg: Optional[Union[list, dict]] = None) -> None:
        check_patch_grid(img_size, patch_size, type(self).__name__)
        if not 0. <= mask_ratio < 1.:
            raise ValueError(f'mask_ratio must be in [0, 1), got {mask_ratio}')
        super().__init__(
            arch=arch,
            img_size=img_size,
            patch_size=patch_size,
            out_indices=out_indices,
            drop_rate=drop_rate,
            drop_path_rate=drop_path_rate,
            norm_cfg=norm_cfg,
            final_norm=final_norm,
            out_type=out_type,
            interpolate_mode=interpolate_mode,
            patch_cfg=patch_cfg,
            layer_cfgs=layer_cfgs,
            mask_ratio=mask_ratio,
            init_cfg=init_cfg)
        self.with_cp = with_cp
        if self.num_keep < 1:
            raise ValueError(
                f'mask_ratio={mask_ratio} leaves no visible patch of the '
                f'{self.num_patches} (int({self.num_patches} * '
                f'(1 - {mask_ratio})) = 0); at most '
                f'{1 - 1 / self.num_patches:.6g} keeps one.')
        use_fast_attention(self)

    @property
    def num_keep(self) -> int:
        """Visible patches per image (same rounding as the official code)."""
        return int(self.num_patches * (1 - self.mask_ratio))

    def noise_from_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """Masking noise that replays a (B, L) 0/1 patch mask (1 = hidden)
        hiding exactly as many patches as the mask ratio does."""
        hidden = mask.shape[-1] - self.num_keep
        counts = mask.flatten(1).sum(1)
        if mask.dim() != 2 or not bool((counts == hidden).all()):
            raise ValueError(
                f'mask must be (B, L) with exactly {hidden} ones per row '
                f'(mask_ratio={self.mask_ratio}); got shape '
                f'{tuple(mask.shape)} and row sums {counts.tolist()}')
        return mask.float()

    def random_masking(
        self,
        x: torch.Tensor,
        mask_ratio: float = 0.75,
        noise: Optional[torch.Tensor] = None
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-sample random masking: keep the patches with the smallest noise.

        A caller-supplied ``noise`` (B, L) makes the mask reproducible. The
        sort is stable so a 0/1 mask used as noise keeps exactly its zeros.

        Returns:
            visible tokens (B, K, C), mask (B, L) with 1 = hidden, and the
            permutation that puts the decoder's tokens back in image order.
        """
        B, L, C = x.shape
        num_keep = int(L * (1 - mask_ratio))
        if noise is None:
            noise = torch.rand(B, L, device=x.device)
        elif noise.shape != (B, L):
            raise ValueError(f'noise must have shape (B, L)=({B}, {L}), '
                             f'got {tuple(noise.shape)}')
        noise = noise.to(x.device)

        shuffle = torch.argsort(noise, dim=1, stable=True)
        restore = torch.argsort(shuffle, dim=1)
        keep = shuffle[:, :num_keep]
        visible = torch.gather(x, 1, keep.unsqueeze(-1).expand(-1, -1, C))

        mask = torch.ones(B, L, device=x.device)
        mask[:, :num_keep] = 0
        mask = torch.gather(mask, 1, restore)
        return visible, mask, restore

    def forward(
        self,
        x: torch.Tensor,
        mask: Optional[bool] = True,
        noise: Optional[torch.Tensor] = None
    ) -> Union[Tuple[torch.Tensor, ...], Tuple[torch.Tensor, torch.Tensor,
                                               torch.Tensor]]:
        """Encode visible patches (``mask`` truthy) or the full image.

        With ``mask=None``/``False`` this is the plain ViT forward used for
        feature extraction; otherwise it returns ``(latent, mask,
        ids_restore)`` like ``MAEViT``.
        """
        if not mask:
            return super(MAEViT, self).forward(x)
        if tuple(x.shape[-2:]) != tuple(self.img_size):
            raise ValueError(
                f'{type(self).__name__}: input of size {tuple(x.shape[-2:])} '
                f'does not match img_size={tuple(self.img_size)}; masked '
                f'pre-training uses fixed-size crops.')
        B = x.shape[0]
        x = self.patch_embed(x)[0] + self.pos_embed[:, 1:, :]
        x, mask, ids_restore = self.random_masking(x, self.mask_ratio, noise)
        cls = (self.cls_token + self.pos_embed[:, :1, :]).expand(B, -1, -1)
        x = torch.cat([cls, x], dim=1)
        x = run_blocks(self.layers, x, self.with_cp and self.training)
        if self.final_norm:
            x = self.ln1(x)
        return x, mask, ids_restore
