"""Linear probe on cached features: perfect on a separable set, chance on
shuffled labels."""
import torch

from dbot_mm.analysis import linear_probe


def test_linear_probe_separable_and_shuffled():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(10, 16, generator=g) * 4
    ytr = torch.arange(10).repeat(40)
    yva = torch.arange(10).repeat(10)
    xtr = centres[ytr] + torch.randn(400, 16, generator=g)
    xva = centres[yva] + torch.randn(100, 16, generator=g)
    assert torch.equal(linear_probe(xtr, ytr, xva), yva)
    noise = torch.randn(400, 16, generator=g)
    acc = (linear_probe(noise, ytr[torch.randperm(400, generator=g)],
                        torch.randn(1000, 16, generator=g)) ==
           torch.arange(10).repeat(100)).float().mean()
    assert acc < 0.2
