"""Normalised singular-value spectrum of token features.

A representation that uses few directions of its feature space (dimensional
collapse) shows a spectrum that drops off quickly; the paper compares how
flat the spectra of dBOT and MAE encoders are. The features of a block are
the token vectors it outputs for a set of images, stacked into one
(tokens, channels) matrix, centred per channel (so the mean token does not
dominate the first singular value), and its singular values divided by the
largest, in decreasing order.

Block outputs are taken before the encoder's final LayerNorm, the same point
for every block; pass ``tokens='mean'`` / ``'cls'`` for one vector per image
instead of every patch token.
"""
from typing import Dict, Iterable, List, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from .plotting import pyplot, save_figure, write_csv

__all__ = [
    'normalized_singular_values', 'effective_rank', 'token_features',
    'write_singular_values_csv', 'plot_singular_values'
]

TOKEN_MODES = ('patch', 'all', 'mean', 'cls')


def normalized_singular_values(feats: torch.Tensor,
                               center: bool = True) -> torch.Tensor:
    """Singular values of a (M, C) feature matrix divided by the largest.

    Computed in float64 so that a rank-k matrix shows values near 1e-15
    beyond index k. An all-zero matrix gives zeros.
    """
    x = torch.as_tensor(feats).double()
    if x.dim() != 2:
        raise ValueError(f'features must be (M, C), got {tuple(x.shape)}')
    if center:
        x = x - x.mean(dim=0, keepdim=True)
    s = torch.linalg.svdvals(x)  # sorted in decreasing order
    top = s[0] if s.numel() else s.new_zeros(())
    return s / top if top > 0 else s


def effective_rank(values) -> float:
    """exp(entropy) of the spectrum as a distribution (Roy & Vetterli): one
    number that says how many directions the features really use."""
    s = np.asarray(values, dtype=np.float64)
    total = s.sum()
    if total <= 0:
        return 0.
    p = s[s > 0] / total
    return float(np.exp(-(p * np.log(p)).sum()))


def _select(x: torch.Tensor, tokens: str, extra: int) -> torch.Tensor:
    if tokens == 'patch':
        return x[:, extra:].reshape(-1, x.shape[-1])
    if tokens == 'all':
        return x.reshape(-1, x.shape[-1])
    if tokens == 'mean':
        return x[:, extra:].mean(dim=1)
    if tokens == 'cls':
        if extra < 1:
            raise ValueError("tokens='cls' but the backbone has no cls token")
        return x[:, 0]
    raise ValueError(f'tokens must be one of {TOKEN_MODES}, got {tokens!r}')


@torch.no_grad()
def token_features(backbone: nn.Module,
                   images: Union[torch.Tensor, Iterable[torch.Tensor]],
                   layers: Union[str, Sequence[int]] = 'last',
                   tokens: str = 'patch',
                   batch_size: int = 64,
                   forward_kwargs: Optional[dict] = None
                   ) -> Dict[int, torch.Tensor]:
    """Token features of the chosen blocks (0-based) for ``images``.

    Args:
        backbone: ViT with ``layers`` (mmpretrain VisionTransformer family).
        images: normalised (N, 3, H, W) tensor or iterable of batches.
        layers: ``'last'``, ``'all'`` or block indices.
        tokens: ``'patch'`` every patch token, ``'all'`` with the cls
            token, ``'mean'`` mean patch token per image, ``'cls'``.

    Returns:
        block index -> (M, C) float32 features on the CPU.
    """
    blocks = list(backbone.layers)
    if layers == 'last':
        chosen = [len(blocks) - 1]
    elif layers == 'all':
        chosen = list(range(len(blocks)))
    else:
        chosen = [int(i) % len(blocks) for i in layers]
    if tokens not in TOKEN_MODES:
        raise ValueError(f'tokens must be one of {TOKEN_MODES}, got '
                         f'{tokens!r}')
    extra = getattr(backbone, 'num_extra_tokens', 1)
    if isinstance(images, torch.Tensor):
        images = images.split(batch_size)
    if forward_kwargs is None:
        from .attention_distance import _default_forward_kwargs
        forward_kwargs = _default_forward_kwargs(backbone)

    out: Dict[int, List[torch.Tensor]] = {i: [] for i in chosen}

    def hook(index):

        def fn(module, args, output):
            x = output[0] if isinstance(output, (tuple, list)) else output
            out[index].append(_select(x.float(), tokens, extra).cpu())

        return fn

    handles = [blocks[i].register_forward_hook(hook(i)) for i in chosen]
    was_training = backbone.training
    backbone.eval()
    param = next(backbone.parameters())
    try:
        for batch in images:
            backbone(batch.to(param.device, param.dtype), **forward_kwargs)
    finally:
        backbone.train(was_training)
        for h in handles:
            h.remove()
    return {i: torch.cat(v) for i, v in out.items()}


def write_singular_values_csv(results: Dict[str, Dict[int, np.ndarray]],
                              path: str) -> str:
    """One row per (model, block, index); blocks and indices from 1."""
    return write_csv(
        path, ['model', 'layer', 'index', 'normalized_singular_value'],
        ([name, int(layer) + 1, i, f'{v:.6e}']
         for name, spectra in results.items()
         for layer, values in spectra.items()
         for i, v in enumerate(np.asarray(values), 1)))


def plot_singular_values(results: Dict[str, Dict[int, np.ndarray]],
                         path: str,
                         title: Optional[str] = None,
                         floor: float = 1e-6) -> str:
    """Log-scale spectra: one colour per model; with several blocks per
    model, later blocks are drawn darker.

    Values under ``floor`` are clipped to it so that numerically zero tails
    stay on a log axis.
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    cmaps = ['Blues', 'Oranges', 'Greens', 'Reds', 'Purples', 'Greys']
    for i, (name, spectra) in enumerate(results.items()):
        layers = sorted(spectra)
        cmap = plt.get_cmap(cmaps[i % len(cmaps)])
        for j, layer in enumerate(layers):
            v = np.clip(np.asarray(spectra[layer], dtype=float), floor, None)
            shade = 0.9 if len(layers) == 1 else 0.35 + 0.6 * j / (
                len(layers) - 1)
            label = name if len(layers) == 1 else (
                f'{name} block {layer + 1}'
                if j in (0, len(layers) - 1) else None)
            ax.plot(np.arange(1, len(v) + 1), v, color=cmap(shade), lw=1.3,
                    label=label)
    ax.set_yscale('log')
    ax.set_xlabel('singular value index')
    ax.set_ylabel('singular value / max')
    ax.grid(alpha=0.3, which='both')
    return save_figure(fig, ax, path, title)
