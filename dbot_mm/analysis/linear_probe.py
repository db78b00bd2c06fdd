"""Linear probe on frozen, cached features.

MAE's protocol trains a BatchNorm (no affine) + linear layer on a frozen
encoder for 90 epochs with augmentation. At mini-study scale the encoder
forward would dominate that cost, so the features are computed once and the
same classifier is fitted on them: standardised with the train statistics
(what a non-affine BatchNorm does at test time), then a multinomial logistic
regression with a fixed, small L2 penalty, solved to convergence by
full-batch L-BFGS. Nothing is tuned on the evaluation set, and the result is
deterministic for given features.
"""
from typing import Optional

import torch
import torch.nn.functional as F

__all__ = ['linear_probe']


def linear_probe(train_feats: torch.Tensor,
                 train_labels: torch.Tensor,
                 val_feats: torch.Tensor,
                 num_classes: Optional[int] = None,
                 weight_decay: float = 1e-4,
                 max_iter: int = 500) -> torch.Tensor:
    """Fit on the train features; return the predicted val labels.

    Args:
        train_feats, val_feats: (N, C) features.
        train_labels: (N, ) integer labels.
        num_classes: default ``max(train_labels) + 1``.
        weight_decay: L2 penalty on the weights (not the bias), times 1/2.
        max_iter: L-BFGS iterations.
    """
    x = train_feats.double()
    y = train_labels.long()
    if num_classes is None:
        num_classes = int(y.max()) + 1
    mean = x.mean(0, keepdim=True)
    std = x.std(0, keepdim=True).clamp_min(1e-6)
    x = (x - mean) / std
    w = torch.zeros(x.shape[1], num_classes, dtype=x.dtype,
                    requires_grad=True)
    b = torch.zeros(num_classes, dtype=x.dtype, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=max_iter,
                            tolerance_grad=1e-9, tolerance_change=1e-12,
                            history_size=20, line_search_fn='strong_wolfe')

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(x @ w + b, y) + \
            0.5 * weight_decay * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    v = (val_feats.double() - mean) / std
    with torch.no_grad():
        return (v @ w + b).argmax(1)
