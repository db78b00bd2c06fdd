"""The one interface every target of ``DBOT`` implements: :class:`BaseTarget`.

A target says what the decoder regresses. ``DBOT`` builds it from the
config key ``model.teacher`` (the name is kept so checkpoints keep their
``teacher.*`` keys) and asks it these things, never its type:

``out_dims`` (int)
    Channels per target token: the decoder's ``predict_dim``.
``with_cls`` (bool)
    Whether the target has a cls token at index 0 that counts in the loss.
``needs_mask`` (bool)
    Whether ``forward`` needs the student's mask. Such a target runs after
    the student encoder; the others run first (lower peak memory).
``forward(inputs, mask=None, ids_masked=None)``
    The target tokens. ``mask`` is the student's (B, L) patch mask
    (1 = hidden); ``ids_masked`` its hidden patch indices (B, L - K) in the
    student's masking order (the official MAE/SdAE ``ids_unkeep``).
``select(pred, mask, ids_masked)``
    The decoder output (B, 1 + L, C), cls first, cut to the positions the
    target covers, and a 0/1 weight per position, shaped like the target's
    first two dimensions: what ``MaskedDistillHead.loss`` receives.

Implementations: the ViT teachers (``ViTTeacher``, ``PretrainedTeacher``,
``EMATeacher``) and the parameter-free :class:`ImageTarget` s (pixels, HOG).
"""
from abc import abstractmethod
from typing import Optional, Tuple

import torch
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS


def select_tokens(pred: torch.Tensor, mask: torch.Tensor,
                  with_cls: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    """Every position; the loss counts hidden patches (and cls if kept)."""
    if with_cls:
        return pred, torch.cat([mask.new_ones(mask.shape[0], 1), mask], 1)
    return pred[:, 1:], mask


def fill_from_student(cfg: dict, student: dict) -> dict:
    """A target config completed from the student's geometry.

    The keys the target class lists in ``follows_student`` and the config
    leaves out take the student's value (``student``: ``arch``,
    ``img_size``, ``patch_size``). A teacher given its own ``arch`` keeps
    its own sizes too.
    """
    cfg = dict(cfg)
    cls = MODELS.get(cfg['type']) if isinstance(cfg['type'], str) \
        else cfg['type']
    if cls is None:  # unknown type: MODELS.build names it
        return cfg
    keys = cls.follows_student
    if 'arch' in keys:
        if cfg.get('arch') is not None:
            return cfg
        cfg['arch'] = student['arch']
    for key in ('img_size', 'patch_size'):
        if key in keys:
            cfg.setdefault(key, student[key])
    return cfg


def masked_ids(ids_restore: torch.Tensor, num_visible: int) -> torch.Tensor:
    """Hidden patch indices in masking order (official ``ids_unkeep``).

    ``ids_restore`` is the inverse of the student's shuffle, so its argsort
    is the shuffle itself; the first ``num_visible`` entries are the
    visible patches, the rest the hidden ones in noise order.
    """
    return torch.argsort(ids_restore, dim=1)[:, num_visible:]


class BaseTarget(BaseModule):
    """What every target is: frozen, in eval mode, no gradients.

    Subclasses set ``out_dims`` (an int) and implement ``forward``; the
    class attributes below are the defaults of a teacher with a cls token.
    """

    out_dims: int
    with_cls = True
    needs_mask = False
    #: config keys ``DBOT`` fills in from the student when left out
    follows_student: Tuple[str, ...] = ('img_size', 'patch_size')
    #: how ``DBOT.teacher_info`` names the target (None: from the stage)
    origin: Optional[str] = None

    def train(self, mode: bool = True) -> 'BaseTarget':
        """Ignore ``mode``: targets never see dropout or drop path."""
        return super().train(False)

    @abstractmethod
    def forward(self,
                inputs: torch.Tensor,
                mask: Optional[torch.Tensor] = None,
                ids_masked: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Target tokens of the images ``inputs`` (B, 3, H, W)."""

    def forward_bf16(self, inputs: torch.Tensor, **kwargs) -> torch.Tensor:
        """``forward`` under bf16 autocast with bf16 weights (``DBOT``'s
        ``bf16_teacher``); a target without weights runs ``forward``."""
        return self(inputs, **kwargs)

    def select(self, pred: torch.Tensor, mask: torch.Tensor,
               ids_masked: Optional[torch.Tensor] = None
               ) -> Tuple[torch.Tensor, torch.Tensor]:
        """All positions, the hidden patches (and cls if kept) counted."""
        return select_tokens(pred, mask, self.with_cls)


class ImageTarget(BaseTarget):
    """Parameter-free targets computed from the image (pixels, HOG).

    No cls token; computed in float32 outside autocast so that AMP does not
    round the targets.

    Args:
        img_size (int): Input size, as the student's. Defaults to 224.
        patch_size (int): Student patch size. Defaults to 16.
        init_cfg (dict, optional): Defaults to None.
    """

    with_cls = False

    def __init__(self,
                 img_size: int = 224,
                 patch_size: int = 16,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        from ..backbones.dbot_vit import check_patch_grid
        grid = check_patch_grid(img_size, patch_size, type(self).__name__)
        self.img_size = img_size
        self.patch_size = patch_size
        self.patch_resolution = grid
        self.num_patches = grid[0] * grid[1]
        self.train(False)

    def forward(self,
                inputs: torch.Tensor,
                mask: Optional[torch.Tensor] = None,
                ids_masked: Optional[torch.Tensor] = None) -> torch.Tensor:
        with torch.no_grad(), torch.autocast(
                inputs.device.type, enabled=False):
            return self.compute(inputs.float())

    @abstractmethod
    def compute(self, inputs: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) float32 -> (B, L, out_dims) patch targets."""
