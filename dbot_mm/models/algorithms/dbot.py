"""dBOT: masked distillation from a teacher that is bootstrapped per stage.

The paper's masked knowledge distillation objective (Sec. 3): from the
visible patches the student predicts the teacher's features of the whole
image at the masked positions. One step, as the official ``models_mae.py``::

    mask   = random_masking(x, ratio=0.75)          # 1 = hidden patch
    latent = student(x[~mask])                      # DBOTViT, visible only
    pred   = decoder(latent + mask tokens)          # DBOTDecoder, cls kept
    t      = teacher(x)                             # frozen, no final norm
    t      = (t - mean(t)) / sqrt(var(t) + 1e-6)    # per token
    loss   = SmoothL1_{beta=2}(pred, t) over masked patches + cls

At each stage boundary the teacher becomes the student, the student is
re-initialised and the LR schedule restarts (``StageBootstrapHook``,
``stage_lr_schedulers``). ``docs/code_map.md`` maps each step to its code.
"""
import copy
from typing import Dict, List, Optional, Tuple, Union

import torch
from mmpretrain.models.selfsup.base import BaseSelfSupervisor
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample
from torch import nn

from ...engine.fsdp import unwrap, whole_children
from ..targets.base import fill_from_student, masked_ids
from ..utils import (autocast_dtype, check_sizes, fill_missing,
                     has_pretrained, redraw, student_geometry,
                     with_checkpoint, zero_linear_biases)

# Official ``initialize_weights`` (the ViT / decoder ``init_weights`` add the
# sin-cos, patch-embed and token inits; Linear biases are then set to 0).
DEFAULT_INIT_CFG = [
    dict(type='Xavier', layer='Linear', distribution='uniform'),
    dict(type='Constant', layer='LayerNorm', val=1.0, bias=0.0),
]
STUDENT = ('backbone', 'neck', 'head')


@MODELS.register_module()
class DBOT(BaseSelfSupervisor):
    """dBOT (Exploring Target Representations for Masked Autoencoders).

    Args:
        backbone (dict): Student encoder, e.g. ``DBOTViT``.
        neck (dict): Decoder, e.g. ``DBOTDecoder``; ``embed_dim`` and
            ``num_patches`` default to the backbone's, ``predict_dim`` to the
            target's ``out_dims``.
        head (dict): ``MaskedDistillHead``.
        teacher (dict): The target (``targets/base.py``): a frozen network or
            a function of the image. The keys in its ``follows_student`` it
            leaves out (arch, image and patch size) are the student's.
        init_teacher_from_student (bool): Copy the initial student encoder
            into the teacher (official stage 1). Defaults to True.
        bf16_teacher (bool): Under bf16 autocast run the teacher all in bf16
            (``forward_bf16``). Defaults to True.
        data_preprocessor (dict, optional): Defaults to
            ``SelfSupDataPreprocessor``.
        pretrained (str, optional): Checkpoint for the whole model.
        init_cfg (dict | list, optional): None: the official MAE init
            (:data:`DEFAULT_INIT_CFG`); ``[]``: none. Student Linear biases
            start at 0 unless a ``Pretrained`` init loads the student.
    """

    def __init__(self,
                 backbone: dict,
                 neck: dict,
                 head: dict,
                 teacher: Union[dict, nn.Module],
                 init_teacher_from_student: bool = True,
                 bf16_teacher: bool = True,
                 data_preprocessor: Optional[Union[dict, nn.Module]] = None,
                 pretrained: Optional[str] = None,
                 init_cfg: Optional[Union[List[dict], dict]] = None) -> None:
        if init_cfg is None:
            init_cfg = copy.deepcopy(DEFAULT_INIT_CFG)
        if pretrained is not None:
            init_cfg = with_checkpoint(init_cfg, pretrained)
        if isinstance(backbone, dict) and 'type' in backbone:
            geo = student_geometry(backbone)
            neck = fill_missing(neck, embed_dim=geo['width'],
                                num_patches=geo['num_patches'])
            if isinstance(teacher, dict):
                teacher = fill_from_student(teacher, geo)
        if isinstance(teacher, dict):
            teacher = MODELS.build(teacher)
        neck = fill_missing(neck, predict_dim=teacher.out_dims)
        super().__init__(
            backbone=backbone,
            neck=neck,
            head=head,
            data_preprocessor=data_preprocessor,
            init_cfg=init_cfg)
        # Registered last so that popping/re-adding it in reinit_student
        # keeps the module (and state-dict) order.
        self.teacher = teacher
        self.init_teacher_from_student = init_teacher_from_student
        self.bf16_teacher = bf16_teacher
        self.register_buffer('stage', torch.zeros((), dtype=torch.long))
        check_sizes('DBOT', self.backbone, self.neck, teacher, 'embed_dim',
                    'predict_dim')

    def init_weights(self) -> None:
        """Init as MAE, then (optionally) seed the teacher with the student
        (not after a model-level ``Pretrained`` init: it has a teacher)."""
        first_time = not self.is_init
        super().init_weights()
        if first_time and not any(
                has_pretrained(getattr(m, 'init_cfg', None))
                for m in [self] + self._student_parts()):
            with whole_children(self, STUDENT):
                zero_linear_biases(self._student_parts())
        if first_time and self.init_teacher_from_student \
                and hasattr(self.teacher, 'load_from_student') \
                and not has_pretrained(self.init_cfg):
            self.teacher.load_from_student(self.student_state())

    def extract_feat(self, inputs: torch.Tensor):
        return self.backbone(inputs, mask=None)

    # ------------------------------------------------------------ the method
    def loss(self,
             inputs: torch.Tensor,
             data_samples: Optional[List[DataSample]] = None,
             noise: Optional[torch.Tensor] = None,
             mask: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """Distillation loss of images (B, 3, H, W); ``noise`` or ``mask``
        (B, L) replay a masking (see ``encode``)."""
        # a target that needs no mask runs first: its activations are freed
        # before the student's graph grows (targets draw no random numbers)
        target = None if self.teacher.needs_mask else \
            self.teacher_forward(inputs)
        latent, mask, ids_restore, ids_masked = self.encode(
            inputs, noise, mask)
        if target is None:
            target = self.teacher_forward(inputs, mask=mask,
                                          ids_masked=ids_masked)
        pred = self.neck(latent, ids_restore)  # mask tokens -> all tokens
        return dict(loss=self.distill_loss(pred, target, mask, ids_masked))

    def encode(self,
               inputs: torch.Tensor,
               noise: Optional[torch.Tensor] = None,
               mask: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor]:
        """Random masking and the student encoder on the visible patches.

        ``noise`` (B, L) replays a masking (lowest values stay visible),
        ``mask`` (B, L) a 0/1 patch mask (1 = hidden). Returns the latent
        (B, 1 + K, C), cls first; the mask; ``ids_restore`` (B, L), the
        inverse shuffle; the hidden patch ids (B, L - K) in masking order.
        """
        if mask is not None:
            if noise is not None:
                raise ValueError('pass either noise or mask, not both')
            noise = self.backbone.noise_from_mask(mask)
        latent, mask, ids_restore = self.backbone(inputs, noise=noise)
        ids_masked = masked_ids(ids_restore, latent.shape[1] - 1)
        return latent, mask, ids_restore, ids_masked

    def teacher_forward(self, inputs: torch.Tensor,
                        **kwargs) -> torch.Tensor:
        """The target tokens; all-bf16 under bf16 autocast (``bf16_teacher``).

        The teacher runs under ``no_grad`` (its own forward), not
        ``inference_mode``: inference tensors may not be saved for backward,
        and a criterion on un-normalised targets would have to save them.
        """
        if self.bf16_teacher and unwrap(self.teacher) is self.teacher and \
                autocast_dtype(inputs.device.type) == torch.bfloat16:
            return self.teacher.forward_bf16(inputs, **kwargs)
        return self.teacher(inputs, **kwargs)

    def distill_loss(self, pred: torch.Tensor, target: torch.Tensor,
                     mask: torch.Tensor,
                     ids_masked: torch.Tensor) -> torch.Tensor:
        """The head's normalised criterion at the positions the target
        covers (``select``): for dBOT's teachers the masked patches and the
        cls token, for pixels and HOG the masked patches, for SdAE's
        multi-fold teacher the patches of its folds."""
        pred, weight = unwrap(self.teacher).select(pred, mask, ids_masked)
        return self.head.loss(pred, target, weight)

    # ----------------------------------------------------------------- stages
    def student_state(self) -> Dict[str, torch.Tensor]:
        """Student encoder tensors, keyed as in the teacher."""
        sharded = unwrap(self.backbone) is not self.backbone
        with whole_children(self, STUDENT):
            state = dict(self.backbone.state_dict())
            if sharded:  # the gathered storage is freed on leaving
                state = {k: v.clone() for k, v in state.items()}
        return state

    def student_modules(self) -> Dict[str, nn.Module]:
        return {n: getattr(self, n) for n in STUDENT
                if getattr(self, n, None) is not None}

    @torch.no_grad()
    def bootstrap_teacher(self, depth: int) -> None:
        """Teacher <- student encoder (in place), running ``depth`` blocks.
        """
        depth = int(depth)
        s_layers = getattr(self.backbone, 'num_layers', None)
        if s_layers is not None and depth > s_layers:
            raise ValueError(f'bootstrap depth={depth} exceeds the student '
                             f'encoder depth backbone.arch.num_layers='
                             f'{s_layers}')
        self.teacher.load_from_student(self.student_state(), depth=depth)

    @torch.no_grad()
    def reinit_student(self, seed: int) -> None:
        """Redraw the student in place from ``seed`` (the same on every
        rank) with the steps of a fresh build (``utils.redraw``), as the
        official ``initialize_weights()`` at a stage boundary; like it, the
        patch-embed bias keeps its trained value. The teacher is taken out
        so the model-wide ``init_cfg`` cannot touch it."""
        device = next(self.backbone.parameters()).device
        teacher = self._modules.pop('teacher')
        try:
            with whole_children(self, STUDENT):
                redraw(self, self._student_parts(), seed, device)
        finally:
            self._modules['teacher'] = teacher

    @torch.no_grad()
    def ema_update_teacher(self, momentum: float) -> None:
        """Teacher <- ``momentum`` * teacher + (1 - momentum) * student
        encoder, in place (``EMATeacherHook``; teacher needs ``ema_update``).
        """
        update = getattr(self.teacher, 'ema_update', None)
        if update is None:
            raise TypeError(
                f'{type(self.teacher).__name__} has no ema_update: '
                'EMATeacherHook needs a moving-average teacher such as '
                "model.teacher=dict(type='EMATeacher', ...)")
        update(self.student_state(), momentum)

    def teacher_info(self) -> Dict[str, Union[str, int]]:
        """Short description of the current target, for logs."""
        stage, depth = int(self.stage), getattr(self.teacher, 'depth', -1)
        origin = self.teacher.origin or (
            'bootstrapped' if stage > 0 else 'pretrained' if has_pretrained(
                self.init_cfg) or has_pretrained(self.teacher.init_cfg) else
            'student_init' if self.init_teacher_from_student else 'random')
        return dict(origin=origin, depth=int(depth), stage=stage)

    def _student_parts(self) -> List[nn.Module]:
        return [m for s in self.student_modules().values()
                for m in s.modules()]
