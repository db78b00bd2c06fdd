import pytest
import torch


def _randomize(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Redraw every tensor so that a swapped or skipped key shows up.

    Default inits (unit LayerNorms, zero biases, zero cls tokens) would let
    a converter that drops or mixes up such tensors pass unnoticed.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            scale = 0.5 if p.dim() <= 1 else 0.1
            p.copy_(torch.randn(p.shape, generator=gen) * scale +
                    (1.0 if name.endswith(('norm1.weight', 'norm2.weight',
                                           'norm.weight', 'ln_1.weight',
                                           'ln_2.weight')) else 0.0))
    return module.eval()


@pytest.fixture
def randomize():
    return _randomize
