"""Mean attention distance per block and head (ViT paper, Fig. 7; dBOT's
property figure).

For one head and one query patch it is the attention-weighted average of
the Euclidean distances, in pixels, from the query patch's centre to every
key patch's centre; the figure reports its mean over query patches and
images. Short distances mean local (convolution-like) heads, long ones
global heads.

The cls token has no position, so it is neither a query nor a key here: its
row and column are dropped and, by default, each query's remaining weights
are renormalised to sum to one, so the value is exactly an average distance
over the patches the query attends to. ``renormalize=False`` keeps the raw
weights (the cls share then counts as distance 0), which is what the widely
copied ViT / "Do ViTs see like CNNs" notebooks compute; both are offered so
numbers can be compared with either.

The attention maps of mmpretrain's ``MultiheadAttention`` are never
materialised (it calls fused SDPA), so a forward hook recomputes
``softmax(q k^T / sqrt(d))`` from the block's own ``qkv`` layer and the
block's input, and reduces it to per-head sums at once: a ViT-B batch never
holds more than one layer's maps.
"""
from typing import Dict, Iterable, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from .plotting import pyplot, save_figure, write_csv

__all__ = [
    'patch_distance_matrix', 'mean_attention_distance', 'attention_probs',
    'AttentionDistanceMeter', 'attention_distance',
    'write_attention_distance_csv', 'plot_attention_distance',
    'uniform_attention_distance'
]


def patch_distance_matrix(grid: Union[int, Tuple[int, int]],
                          patch_size: Union[float, Tuple[float, float]] = 1.
                          ) -> torch.Tensor:
    """(L, L) Euclidean distances between patch centres, in pixels.

    Patches are numbered row-major, as ``PatchEmbed`` flattens them.
    """
    h, w = (grid, grid) if isinstance(grid, int) else grid
    ph, pw = (patch_size, patch_size) if np.isscalar(patch_size) \
        else patch_size
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float64) * ph,
        torch.arange(w, dtype=torch.float64) * pw,
        indexing='ij')
    pos = torch.stack([ys.flatten(), xs.flatten()], dim=1)
    return torch.cdist(pos, pos)


def mean_attention_distance(attn: torch.Tensor,
                            grid: Union[int, Tuple[int, int]],
                            patch_size: Union[float, Tuple[float, float]] = 1.,
                            num_extra_tokens: int = 1,
                            renormalize: bool = True) -> torch.Tensor:
    """Mean attention distance of every image and head.

    Args:
        attn: attention probabilities (B, heads, N, N), rows = queries,
            ``N = num_extra_tokens + h * w`` (extra tokens first).
        grid: patch grid ``h`` (square) or ``(h, w)``.
        patch_size: pixels per patch, so distances come out in pixels.
        num_extra_tokens: cls-like tokens to leave out as queries and keys.
        renormalize: rescale each query's patch weights to sum to one
            (see the module docstring).

    Returns:
        (B, heads) float64: distance averaged over the query patches.
    """
    dist = patch_distance_matrix(grid, patch_size).to(attn.device)
    num = dist.shape[0]
    if attn.shape[-1] != num_extra_tokens + num or \
            attn.shape[-2] != attn.shape[-1]:
        raise ValueError(
            f'attention of shape {tuple(attn.shape)} does not fit a '
            f'{grid} grid plus {num_extra_tokens} extra token(s)')
    a = attn[..., num_extra_tokens:, num_extra_tokens:].double()
    if renormalize:
        a = a / a.sum(-1, keepdim=True).clamp_min(1e-12)
    per_query = (a * dist).sum(-1)  # (B, heads, L)
    return per_query.mean(-1)


def attention_probs(attn: nn.Module, x: torch.Tensor,
                    hw: Optional[Tuple[int, int]] = None) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) of an mmpretrain-style attention module.

    Works for any module with a fused ``qkv`` Linear, ``num_heads`` and
    ``head_dims`` (mmpretrain ``MultiheadAttention``, dbot_mm's
    ``RelPosAttention``, whose relative position bias is added as in its
    forward).
    """
    for name in ('qkv', 'num_heads', 'head_dims'):
        if not hasattr(attn, name):
            raise TypeError(
                f'{type(attn).__name__} has no `{name}`: attention maps can '
                'only be recomputed for modules with a fused qkv projection '
                '(mmpretrain MultiheadAttention and subclasses)')
    B, N, _ = x.shape
    qkv = attn.qkv(x).reshape(B, N, 3, attn.num_heads,
                              attn.head_dims).permute(2, 0, 3, 1, 4)
    q, k = qkv[0].float(), qkv[1].float()
    logits = (q @ k.transpose(-2, -1)) * attn.head_dims**-0.5
    bias = getattr(attn, 'rel_pos_bias', None)
    if bias is not None:
        logits = logits + bias(hw).float()[None]
    return logits.softmax(dim=-1)


def _patch_size(backbone: nn.Module) -> Tuple[int, int]:
    proj = getattr(getattr(backbone, 'patch_embed', None), 'projection',
                   None)
    if proj is None or not hasattr(proj, 'stride'):
        raise TypeError(f'{type(backbone).__name__} has no '
                        'patch_embed.projection to read the patch size from')
    return tuple(int(s) for s in proj.stride)


class AttentionDistanceMeter:
    """Hooks on every block's ``attn`` that accumulate per-head distances.

    Use as a context manager around forwards of the backbone; set ``grid``
    (patch rows, cols) before each forward when images are not the
    backbone's training size.

    Args:
        backbone: ViT with ``layers[i].attn`` and ``patch_embed``.
        patch_size: pixels per patch; default read from ``patch_embed``.
        num_extra_tokens: default ``backbone.num_extra_tokens`` (else 1).
        renormalize: see :func:`mean_attention_distance`.
    """

    def __init__(self,
                 backbone: nn.Module,
                 patch_size: Optional[Union[int, Tuple[int, int]]] = None,
                 num_extra_tokens: Optional[int] = None,
                 renormalize: bool = True):
        self.backbone = backbone
        if patch_size is None:
            patch_size = _patch_size(backbone)
        self.patch_size = patch_size
        self.num_extra_tokens = getattr(backbone, 'num_extra_tokens', 1) \
            if num_extra_tokens is None else num_extra_tokens
        self.renormalize = renormalize
        self.grid: Optional[Tuple[int, int]] = None
        self.layers = list(backbone.layers)
        self._sums = [None] * len(self.layers)
        self.num_images = 0
        self._handles = []

    def _hook(self, index):

        def hook(module, args, kwargs, output):
            x = args[0]
            hw = args[1] if len(args) > 1 else kwargs.get('hw')
            grid = self.grid
            if grid is None:
                side = int(round((x.shape[1] - self.num_extra_tokens)**.5))
                grid = (side, side)
            with torch.no_grad():
                probs = attention_probs(module, x, hw)
                d = mean_attention_distance(probs, grid, self.patch_size,
                                            self.num_extra_tokens,
                                            self.renormalize).sum(0).cpu()
            self._sums[index] = d if self._sums[index] is None \
                else self._sums[index] + d
            if index == 0:
                self.num_images += x.shape[0]

        return hook

    def __enter__(self):
        for i, layer in enumerate(self.layers):
            self._handles.append(
                layer.attn.register_forward_hook(
                    self._hook(i), with_kwargs=True))
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles = []

    def compute(self) -> np.ndarray:
        """(layers, heads) mean distance in pixels over all images seen."""
        if not self.num_images or any(s is None for s in self._sums):
            raise RuntimeError('no forward pass went through the meter')
        return torch.stack(self._sums).numpy() / self.num_images


@torch.no_grad()
def attention_distance(backbone: nn.Module,
                       images: Union[torch.Tensor, Iterable[torch.Tensor]],
                       renormalize: bool = True,
                       batch_size: int = 64,
                       forward_kwargs: Optional[dict] = None) -> np.ndarray:
    """(layers, heads) mean attention distance in pixels over ``images``.

    Args:
        backbone: ViT in any mode (it is put in eval mode for the passes).
        images: normalised (N, 3, H, W) tensor or an iterable of batches.
        renormalize: see :func:`mean_attention_distance`.
        batch_size: split a tensor into batches of this size.
        forward_kwargs: extra forward arguments; default ``mask=None`` for
            backbones whose forward takes ``mask`` (MAE-style encoders).
    """
    if isinstance(images, torch.Tensor):
        images = images.split(batch_size)
    if forward_kwargs is None:
        forward_kwargs = _default_forward_kwargs(backbone)
    patch = _patch_size(backbone)
    was_training = backbone.training
    backbone.eval()
    param = next(backbone.parameters())
    try:
        with AttentionDistanceMeter(backbone, patch,
                                    renormalize=renormalize) as meter:
            for batch in images:
                meter.grid = (batch.shape[-2] // patch[0],
                              batch.shape[-1] // patch[1])
                backbone(batch.to(param.device, param.dtype),
                         **forward_kwargs)
    finally:
        backbone.train(was_training)
    return meter.compute()


def _default_forward_kwargs(backbone: nn.Module) -> dict:
    """MAEViT-style encoders mask unless told ``mask=None``."""
    import inspect
    try:
        params = inspect.signature(backbone.forward).parameters
    except (TypeError, ValueError):
        return {}
    return dict(mask=None) if 'mask' in params else {}


def write_attention_distance_csv(results: Dict[str, np.ndarray],
                                 path: str) -> str:
    """One row per (model, layer, head); layers and heads count from 1."""
    return write_csv(
        path, ['model', 'layer', 'head', 'mean_distance_px'],
        ([name, layer, head, f'{value:.4f}']
         for name, dist in results.items()
         for layer, row in enumerate(np.asarray(dist), 1)
         for head, value in enumerate(row, 1)))


def plot_attention_distance(results: Dict[str, np.ndarray],
                            path: str,
                            title: Optional[str] = None,
                            max_distance: Optional[float] = None) -> str:
    """The paper's layout: block on x, one dot per head, one colour per
    model (side by side when several are compared).

    Args:
        results: model name -> (layers, heads) distances.
        path: PNG to write.
        max_distance: draw this as a dashed line, e.g. the mean distance of
            uniform attention over the grid (the largest a typical head
            reaches).
    """
    plt = pyplot()
    names = list(results)
    width = 0.8 / max(len(names), 1)
    fig, ax = plt.subplots(
        figsize=(max(4.5, 0.6 * max(len(np.asarray(d)) for d in
                                    results.values()) + 2.5), 3.6))
    for i, name in enumerate(names):
        dist = np.asarray(results[name])
        layers = np.arange(1, dist.shape[0] + 1)
        offset = (i - (len(names) - 1) / 2) * width
        xs = np.repeat(layers + offset, dist.shape[1])
        ax.scatter(xs, dist.reshape(-1), s=14, alpha=0.8, label=name,
                   color=f'C{i}')
    if max_distance is not None:
        ax.axhline(max_distance, color='grey', ls='--', lw=0.8,
                   label='uniform attention')
    ax.set_xlabel('block')
    ax.set_ylabel('mean attention distance (px)')
    depth = max(np.asarray(d).shape[0] for d in results.values())
    ax.set_xticks(np.arange(1, depth + 1))
    ax.grid(alpha=0.3)
    return save_figure(fig, ax, path, title)


def uniform_attention_distance(grid: Union[int, Sequence[int]],
                               patch_size: float = 1.) -> float:
    """Mean distance of uniform attention over the grid (plot reference)."""
    return float(patch_distance_matrix(
        grid if isinstance(grid, int) else tuple(grid), patch_size).mean())
