"""dBOT with a symmetric student: the paper's CLIP-teacher rows.

The official ``beit`` branch (``run_pretrain.py``, ``modeling_pretrain.py``,
``engine_for_pretraining.py``) has no encoder-decoder split: block-masked
patches are replaced by a mask token inside a ViT with a shared relative
position bias, a linear ``lm_head`` maps every token to the teacher's width,
and the loss is ``1 - cos`` between the predictions and the teacher's tokens
at the masked patches (cls excluded unless ``--recon_cls_token``). The
teacher is a frozen CLIP image tower: all tokens after ``ln_post``
(``--post_patch_norm True``) and the output projection, with no further
normalisation of the targets.

Here: student :class:`DBOTSymmetricViT`, projection :class:`TokenProjection`,
loss :class:`MaskedDistillHead` with :class:`DistillCosineLoss` and
``norm_target=False``, teacher :class:`PretrainedTeacher`. The block mask
comes from the data pipeline (mmpretrain ``BEiTMaskGenerator`` ->
``DataSample.mask``). One stage, a fixed teacher: no bootstrapping.
"""
from typing import Dict, List, Optional, Union

import torch
from mmengine.model import BaseModule
from mmengine.model.weight_init import trunc_normal_
from mmpretrain.models.selfsup.base import BaseSelfSupervisor
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample
from torch import nn

from ..utils import check_sizes, fill_missing

__all__ = ['DBOTSymmetric', 'TokenProjection']


@MODELS.register_module()
class TokenProjection(BaseModule):
    """Linear map of every token to the teacher's width (official ``lm_head``).

    Args:
        in_channels (int, optional): Student width; filled in by
            :class:`DBOTSymmetric` from the backbone.
        out_channels (int, optional): Teacher width; filled in from the
            teacher's ``out_dims``.
        init_std (float): Truncated-normal std of the weight (truncated at
            +-std as the official init); the bias starts at zero.
            Defaults to 0.02.
    """

    def __init__(self,
                 in_channels: Optional[int] = None,
                 out_channels: Optional[int] = None,
                 init_std: float = 0.02,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if in_channels is None or out_channels is None:
            raise ValueError('TokenProjection needs in_channels and '
                             'out_channels (DBOTSymmetric fills them in)')
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.init_std = init_std
        self.proj = nn.Linear(in_channels, out_channels)

    def init_weights(self) -> None:
        super().init_weights()
        if self.init_cfg is None:
            std = self.init_std
            trunc_normal_(self.proj.weight, std=std, a=-std, b=std)
            nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


@MODELS.register_module()
class DBOTSymmetric(BaseSelfSupervisor):
    """Masked distillation into a symmetric ViT (dBOT ``beit`` branch).

    Args:
        backbone (dict): Student, :class:`DBOTSymmetricViT`; called as
            ``backbone(images, mask)`` and returning all tokens
            (B, 1 + L, C_student) after its final norm.
        neck (dict): :class:`TokenProjection`; ``in_channels`` and
            ``out_channels`` default to the student's and the teacher's
            widths.
        head (dict): :class:`MaskedDistillHead`; official:
            ``DistillCosineLoss`` (eps 1e-6), no target normalisation.
        teacher (dict | nn.Module): Frozen :class:`PretrainedTeacher`
            returning (B, 1 + L, C_teacher) on the student's patch grid
            (``img_size`` / ``out_size`` take care of other patch sizes).
        predict_cls (bool): Also regress the teacher's cls token (official
            ``--recon_cls_token``, off in the released runs).
            Defaults to False.
        data_preprocessor (dict, optional): Defaults to
            ``SelfSupDataPreprocessor``.
        init_cfg (dict | list, optional): Model-wide init; the student and
            projection carry the official init themselves. Defaults to None.
    """

    def __init__(self,
                 backbone: dict,
                 neck: dict,
                 head: dict,
                 teacher: Union[dict, nn.Module],
                 predict_cls: bool = False,
                 data_preprocessor: Optional[Union[dict, nn.Module]] = None,
                 init_cfg: Optional[Union[List[dict], dict]] = None) -> None:
        if isinstance(teacher, dict):
            teacher = MODELS.build(teacher)
        if isinstance(backbone, dict):
            backbone = MODELS.build(backbone)
        neck = fill_missing(neck, in_channels=backbone.embed_dims,
                            out_channels=teacher.out_dims)
        super().__init__(
            backbone=backbone,
            neck=neck,
            head=head,
            data_preprocessor=data_preprocessor,
            init_cfg=init_cfg)
        self.teacher = teacher
        self.predict_cls = predict_cls
        check_sizes('DBOTSymmetric', self.backbone, self.neck, teacher,
                    'in_channels', 'out_channels')

    def extract_feat(self, inputs: torch.Tensor):
        return self.backbone(inputs, mask=None)

    def loss(self,
             inputs: Union[torch.Tensor, List[torch.Tensor]],
             data_samples: Optional[List[DataSample]] = None,
             mask: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """Negative cosine at the masked patches (and cls if asked).

        Args:
            inputs: images (B, 3, H, W), normalised by the preprocessor.
            data_samples: carry ``mask`` (h, w) from ``BEiTMaskGenerator``.
            mask: optional (B, h, w) or (B, L) mask overriding the samples'.
        """
        if isinstance(inputs, (list, tuple)):
            inputs = inputs[0]
        if mask is None:
            if not data_samples or 'mask' not in data_samples[0]:
                raise ValueError(
                    'DBOTSymmetric needs a block mask per image: add '
                    "dict(type='BEiTMaskGenerator', ...) before PackInputs "
                    'in the pipeline, or pass mask=...')
            mask = torch.stack([ds.mask for ds in data_samples])
        mask = mask.to(inputs.device).flatten(1).bool()
        # teacher first: its activations are gone before the student's
        # graph grows
        target = self.teacher(inputs)
        latent = self.backbone(inputs, mask)
        pred = self.neck(latent)
        weights = torch.cat([mask.new_full((mask.shape[0], 1),
                                           self.predict_cls), mask], dim=1)
        loss = self.head.loss(pred, target, weights)
        return dict(loss=loss)
