"""dBOT: masked distillation from a teacher that is bootstrapped per stage.

The student (``backbone`` + ``neck`` + ``head``) is an MAE whose decoder
predicts the frozen teacher's tokens instead of pixels. Stage boundaries are
driven from outside (``StageBootstrapHook``) through ``bootstrap_teacher``,
``reinit_student`` and the persistent ``stage`` buffer; every edit is done in
place so DDP and the optimizer keep valid references, and everything needed
to resume lives in the state dict.
"""
import copy
import inspect
import re
from contextlib import ExitStack, contextmanager
from typing import Dict, List, Optional, Union

import torch
from mmengine.model import BaseModule
from mmpretrain.models.selfsup.base import BaseSelfSupervisor
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample
from torch import nn
from torch.func import functional_call

from ..targets.base import masked_ids, select_for, target_spec

# Official MAE/dBOT ``initialize_weights``: xavier-uniform Linear, zero bias,
# unit LayerNorm (the ViT/decoder ``init_weights`` add sin-cos pos embeds,
# patch-embed xavier and 0.02-normal cls/mask tokens; ``_zero_linear_biases``
# undoes mmpretrain's N(0, 1e-6) FFN biases).
DEFAULT_INIT_CFG = [
    dict(type='Xavier', layer='Linear', distribution='uniform'),
    dict(type='Constant', layer='LayerNorm', val=1.0, bias=0.0),
]


def _is_pretrained(cfg: dict) -> bool:
    return cfg.get('type') == 'Pretrained' or (
        isinstance(cfg.get('type'), type)
        and cfg['type'].__name__ == 'PretrainedInit')


def _has_pretrained(init_cfg) -> bool:
    cfgs = [init_cfg] if isinstance(init_cfg, dict) else (init_cfg or [])
    return any(_is_pretrained(c) for c in cfgs)


@contextmanager
def _without_pretrained_init(modules):
    """Re-initialisation must redraw, not reload a checkpoint."""
    saved = []
    for m in modules:
        cfg = getattr(m, 'init_cfg', None)
        if not cfg:
            continue
        cfgs = [cfg] if isinstance(cfg, dict) else list(cfg)
        kept = [c for c in cfgs if not _is_pretrained(c)]
        if len(kept) != len(cfgs):
            saved.append((m, cfg))
            m.init_cfg = kept or None
    try:
        yield
    finally:
        for m, cfg in saved:
            m.init_cfg = cfg


@torch.no_grad()
def _zero_linear_biases(modules) -> None:
    """Every Linear bias exactly 0, as the official ``initialize_weights``.

    mmpretrain's ``TransformerEncoderLayer.init_weights`` runs after the
    model-wide ``init_cfg`` and draws its FFN biases from N(0, 1e-6).
    """
    for m in modules:
        if isinstance(m, nn.Linear) and m.bias is not None:
            m.bias.zero_()


_BLOCK_KEY = re.compile(r'^layers\.(\d+)\.')


def _autocast_dtype(device_type: str) -> Optional[torch.dtype]:
    """The dtype autocast runs ``device_type`` in, or None when it is off."""
    try:
        if torch.is_autocast_enabled(device_type):
            return torch.get_autocast_dtype(device_type)
    except (TypeError, AttributeError):  # torch < 2.4: no per-device query
        pass
    return None


def _fsdp_class():
    try:
        from torch.distributed.fsdp import FullyShardedDataParallel
    except ImportError:  # torch built without distributed
        return None
    return FullyShardedDataParallel


def _unwrap(module: nn.Module) -> nn.Module:
    fsdp = _fsdp_class()
    return module.module if fsdp is not None and isinstance(
        module, fsdp) else module


@contextmanager
def _full_params(*modules):
    """Unsharded parameters of FSDP-wrapped parts, written back on exit.

    Under FSDP (``configs/pretrain/*_fsdp.py``) the student's parameters are
    flat shards between steps; a stage boundary must read and redraw whole
    tensors. Every rank runs this with the same seed, so the write-back is
    consistent. Plain modules pass through untouched.
    """
    fsdp = _fsdp_class()
    with ExitStack() as stack:
        for m in modules:
            if fsdp is not None and isinstance(m, fsdp):
                stack.enter_context(
                    fsdp.summon_full_params(m, writeback=True))
        yield


@contextmanager
def _seeded(seed: int, device: torch.device):
    """Seed the CPU and the parameters' device only, and restore both after.

    ``torch.manual_seed`` would also reseed every other visible GPU without
    restoring it; forking just the device in use keeps the global streams of
    all devices untouched.
    """
    devices = []
    if device.type == 'cuda':
        index = device.index if device.index is not None \
            else torch.cuda.current_device()
        devices = [index]
    with torch.random.fork_rng(devices=devices, device_type='cuda'):
        torch.random.default_generator.manual_seed(seed)
        if devices:
            with torch.cuda.device(devices[0]):
                torch.cuda.manual_seed(seed)
        yield


def _accepts(type_, name: str) -> bool:
    """Whether the registered class ``type_`` takes the argument ``name``."""
    cls = MODELS.get(type_) if isinstance(type_, str) else type_
    if not inspect.isclass(cls):
        return True
    params = inspect.signature(cls.__init__).parameters
    return name in params or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def _student_geometry(backbone: dict) -> Dict[str, object]:
    """Arch, width, image/patch size and patch count of a student config.

    The arch is written once (on the backbone); the decoder's input width
    and patch count and the teacher's arch follow from it unless given.
    """
    cls = MODELS.get(backbone['type'])
    arch = backbone.get('arch', 'b')
    if isinstance(arch, str):
        zoo = getattr(cls, 'arch_zoo', {})
        if arch.lower() not in zoo:
            raise ValueError(
                f'backbone.arch={arch!r} is not one of {sorted(zoo)}')
        width = zoo[arch.lower()]['embed_dims']
    else:
        width = arch['embed_dims']
    img = backbone.get('img_size', 224)
    patch = backbone.get('patch_size', 16)
    h, w = (img, img) if isinstance(img, int) else img
    return dict(arch=arch, width=width, img_size=img, patch_size=patch,
                num_patches=(h // patch) * (w // patch))


@MODELS.register_module()
class DBOT(BaseSelfSupervisor):
    """dBOT (Exploring Target Representations for Masked Autoencoders).

    Args:
        backbone (dict): Student encoder, e.g. ``DBOTViT`` (visible patches
            only, per-sample random masking).
        neck (dict): Decoder, e.g. ``DBOTDecoder``. ``embed_dim`` and
            ``num_patches`` default to the backbone's; ``predict_dim`` to
            the target's ``out_dims`` (a teacher's ``embed_dims`` if it has
            no ``out_dims``).
        head (dict): ``MaskedDistillHead``.
        teacher (dict): The target (``dbot_mm/models/targets``): a frozen
            network (``ViTTeacher``, ``PretrainedTeacher``, ``EMATeacher``)
            or a fixed function of the image (``PixelTarget``,
            ``HOGTarget``); see ``targets/base.py`` for the interface. A
            target that takes an ``arch`` and has none gets the student's
            arch, image and patch size; one without ``arch`` gets the
            student's image and patch size unless given.
        init_teacher_from_student (bool): After ``init_weights`` copy the
            student's initial encoder weights into the teacher (official
            stage 1 for every arch; a depth-0 teacher then keeps just patch
            embed, pos embed and cls token). Set False for a pretrained
            teacher, whose weights it would otherwise overwrite.
            Defaults to True.
        bf16_teacher (bool): Under bf16 autocast, run the teacher entirely
            in bf16 (weights cast once per step, bf16 residual stream)
            instead of autocast's fp32 residual stream with a cast around
            every matmul. Targets are normalised per token in float32 by the
            head either way. No effect in fp32 or fp16 (an fp16 residual
            stream could overflow in deep teachers). Defaults to True.
        data_preprocessor (dict, optional): Defaults to
            ``SelfSupDataPreprocessor``.
        pretrained (str, optional): Checkpoint for the whole model.
        init_cfg (dict | list, optional): Model-wide init; None means the
            official MAE init (:data:`DEFAULT_INIT_CFG`); ``[]`` disables it.
            Student Linear biases start at exactly 0 either way, unless a
            ``Pretrained`` init loads the student.
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
            # mmengine applies Pretrained last, so the MAE init stays the
            # fallback for keys the checkpoint lacks.
            init_cfg = list([init_cfg] if isinstance(init_cfg, dict) else
                            init_cfg)
            init_cfg.append(dict(type='Pretrained', checkpoint=pretrained))
        if isinstance(backbone, dict) and 'type' in backbone:
            geo = _student_geometry(backbone)
            if isinstance(neck, dict):
                neck = dict(neck)
                for key, value in (('embed_dim', geo['width']),
                                   ('num_patches', geo['num_patches'])):
                    if neck.get(key) is None:
                        neck[key] = value
            if isinstance(teacher, dict):
                teacher = self._complete_target(teacher, geo)
        if isinstance(teacher, dict):
            teacher = MODELS.build(teacher)
        width = target_spec(teacher)['out_dims']
        if isinstance(neck, dict) and width is not None \
                and neck.get('predict_dim') is None:
            neck = dict(neck, predict_dim=width)
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
        self._check_shapes()

    @staticmethod
    def _complete_target(teacher: dict, geo: Dict[str, object]) -> dict:
        """Fill in the student's arch / sizes where the target takes them."""
        teacher = dict(teacher)
        if _accepts(teacher['type'], 'arch'):
            if teacher.get('arch') is None:
                teacher['arch'] = geo['arch']
                for key in ('img_size', 'patch_size'):
                    teacher.setdefault(key, geo[key])
        else:
            for key in ('img_size', 'patch_size'):
                if _accepts(teacher['type'], key):
                    teacher.setdefault(key, geo[key])
        return teacher

    def _check_shapes(self) -> None:
        """Turn shape mismatches into config errors at build time."""
        errors = []
        t_width = target_spec(self.teacher)['out_dims']
        s_width = getattr(self.backbone, 'embed_dims', None)
        pred_dim = getattr(self.neck, 'predict_dim', None)
        if pred_dim is None and hasattr(self.neck, 'decoder_pred'):
            pred_dim = self.neck.decoder_pred.out_features
        if None not in (t_width, pred_dim) and t_width != pred_dim:
            errors.append(f'target width (teacher out_dims, else '
                          f'arch.embed_dims={t_width}) != neck.predict_dim='
                          f'{pred_dim}')
        n_embed = getattr(self.neck, 'embed_dim', None)
        if None not in (s_width, n_embed) and s_width != n_embed:
            errors.append(f'student width (backbone.arch.embed_dims='
                          f'{s_width}) != neck.embed_dim={n_embed}')
        s_len = getattr(self.backbone, 'num_patches', None)
        t_len = getattr(self.teacher, 'num_patches', None)
        n_len = getattr(self.neck, 'num_patches', None)
        if None not in (s_len, t_len) and s_len != t_len:
            errors.append(
                f'student has {s_len} patches but teacher has {t_len} '
                f'(backbone/teacher img_size and patch_size must agree)')
        if None not in (s_len, n_len) and s_len != n_len:
            errors.append(f'student has {s_len} patches but '
                          f'neck.num_patches={n_len}')
        if errors:
            raise ValueError('DBOT config mismatch: ' + '; '.join(errors))

    def init_weights(self) -> None:
        """Init as MAE, then (optionally) seed the teacher with the student.

        A model-level ``Pretrained`` init already brought its own teacher, so
        the copy is skipped then.
        """
        first_time = not self.is_init
        super().init_weights()
        if first_time and not self._student_pretrained():
            with self._whole_students():
                _zero_linear_biases(m for s in self.student_modules().values()
                                    for m in s.modules())
        if first_time and self.init_teacher_from_student \
                and hasattr(self.teacher, 'load_from_student') \
                and not _has_pretrained(self.init_cfg):
            self.teacher.load_from_student(self.student_state())

    def extract_feat(self, inputs: torch.Tensor):
        return self.backbone(inputs, mask=None)

    def loss(self,
             inputs: torch.Tensor,
             data_samples: Optional[List[DataSample]] = None,
             noise: Optional[torch.Tensor] = None,
             mask: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """Loss of the decoder's prediction of the target.

        Which positions count is the target's business (``select``): for
        dBOT's teachers the masked patches and the cls token, for pixels and
        HOG the masked patches, for SdAE's multi-fold teacher the patches of
        its folds.

        Args:
            inputs: images (B, 3, H, W).
            data_samples: unused.
            noise: optional (B, L) masking noise (lowest values stay
                visible) so that a mask can be replayed exactly.
            mask: optional (B, L) 0/1 patch mask (1 = hidden) to replay; it
                must hide exactly as many patches as the mask ratio does.
        """
        if mask is not None:
            if noise is not None:
                raise ValueError('pass either noise or mask, not both')
            noise = self._noise_from_mask(mask)
        # Target first unless it needs the student's mask: its transient
        # tensors (activations, bf16 weight copies) are gone before the
        # student's graph starts to grow, which lowers the peak. Targets
        # draw no random numbers, so the order changes no mask or drop path.
        needs_mask = target_spec(self.teacher)['needs_mask']
        if not needs_mask:
            target = self.teacher_forward(inputs)
        latent, patch_mask, ids_restore = self.backbone(inputs, noise=noise)
        ids_masked = None
        if needs_mask:
            ids_masked = masked_ids(ids_restore, latent.shape[1] - 1)
            target = self.teacher_forward(
                inputs, mask=patch_mask, ids_masked=ids_masked)
        pred = self.neck(latent, ids_restore)
        pred, weight = select_for(
            _unwrap(self.teacher), pred, patch_mask, ids_masked)
        loss = self.head.loss(pred, target, weight)
        return dict(loss=loss)

    def teacher_forward(self, inputs: torch.Tensor,
                        **kwargs) -> torch.Tensor:
        """Teacher tokens; all-bf16 under bf16 autocast (``bf16_teacher``).

        The teacher runs under ``no_grad`` (its own forward), not
        ``inference_mode``: inference tensors may not be saved for backward,
        and a criterion on un-normalised targets would have to save them.
        Its bf16 weights are cast per step from the fp32 ones rather than
        cached, so no copy can go stale when the teacher is bootstrapped or
        loaded; only the blocks that run are cast.
        """
        dtype = _autocast_dtype(inputs.device.type)
        if dtype != torch.bfloat16 or not self.bf16_teacher or \
                _unwrap(self.teacher) is not self.teacher or \
                not any(p.is_floating_point()
                        for p in self.teacher.parameters()):
            return self.teacher(inputs, **kwargs)
        depth = getattr(self.teacher, 'depth', None)
        with torch.no_grad():
            weights = {}
            for name, param in self.teacher.named_parameters():
                block = _BLOCK_KEY.match(name)
                if depth is not None and block and int(block.group(1)) >= \
                        depth:
                    continue
                if param.is_floating_point():
                    weights[name] = param.to(dtype)
        with torch.autocast(inputs.device.type, enabled=False):
            return functional_call(self.teacher, weights,
                                   (inputs.to(dtype), ), kwargs,
                                   strict=False)

    def _noise_from_mask(self, mask: torch.Tensor) -> torch.Tensor:
        hidden = mask.shape[-1] - self.backbone.num_keep
        counts = mask.flatten(1).sum(1)
        if mask.dim() != 2 or not bool((counts == hidden).all()):
            raise ValueError(
                f'mask must be (B, L) with exactly {hidden} ones per row '
                f'(mask_ratio={self.backbone.mask_ratio}); got shape '
                f'{tuple(mask.shape)} and row sums {counts.tolist()}')
        return mask.float()

    # ----------------------------------------------------------------- stages
    def student_state(self) -> Dict[str, torch.Tensor]:
        """Student encoder tensors, keyed as in the teacher."""
        sharded = _unwrap(self.backbone) is not self.backbone
        with self._whole_students():
            state = dict(self.backbone.state_dict())
            if sharded:  # the gathered storage is freed on leaving
                state = {k: v.clone() for k, v in state.items()}
        return state

    @contextmanager
    def _whole_students(self):
        """Student modules as plain modules holding whole parameters.

        Without FSDP this does nothing. With FSDP units (see
        ``dbot_mm/engine/fsdp.py``) each unit is gathered and, for the
        duration, swapped for the module it wraps, so that ``state_dict``,
        ``apply`` and the mmengine init chain see ordinary tensors; edits are
        written back to the shards on exit.
        """
        units = {name: self._modules[name]
                 for name in ('backbone', 'neck', 'head')
                 if self._modules.get(name) is not None
                 and _unwrap(self._modules[name]) is not self._modules[name]}
        with _full_params(*units.values()):
            for name, unit in units.items():
                self._modules[name] = unit.module
            try:
                yield
            finally:
                self._modules.update(units)

    def student_modules(self) -> Dict[str, nn.Module]:
        return {
            name: getattr(self, name)
            for name in ('backbone', 'neck', 'head')
            if getattr(self, name, None) is not None
        }

    @torch.no_grad()
    def bootstrap_teacher(self, depth: int) -> None:
        """Teacher <- current student encoder, running ``depth`` blocks.

        Copies in place, so no Parameter is replaced.
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
        """Redraw the student from ``seed``, in place, as the official
        ``initialize_weights()`` does at a stage boundary.

        Same steps as a fresh build (each layer's ``reset_parameters``, the
        mmengine ``init_weights`` chain with the model's ``init_cfg``, every
        Linear bias exactly 0), so the statistics match a new model; fixed
        sin-cos pos embeds are rebuilt as before. Conv biases (the patch
        embedding's) keep their trained values: the official code redraws
        the patch-embed weight like a Linear but never touches its bias, and
        keeping it is what its stage 2 starts from. The seed makes it
        identical on every DDP rank and the global RNG streams are left as
        they were. The teacher is taken out for the duration so the
        model-wide ``init_cfg`` cannot touch it; ``Pretrained`` entries are
        skipped.
        """
        device = next(self.backbone.parameters()).device
        teacher = self._modules.pop('teacher')
        try:
            with self._whole_students():
                students = [m for s in self.student_modules().values()
                            for m in s.modules()]
                conv_biases = {m: m.bias.detach().clone() for m in students
                               if isinstance(m, nn.Conv2d)
                               and m.bias is not None}
                with _seeded(int(seed), device), \
                        _without_pretrained_init([self] + students):
                    for m in students:
                        if hasattr(m, 'reset_parameters'):
                            m.reset_parameters()
                    for m in [self] + students:
                        if isinstance(m, BaseModule):
                            m._is_init = False
                    # the per-parameter init table went to the log at build
                    # time; once per stage boundary it is only noise
                    self._dump_init_info = lambda *args, **kwargs: None
                    try:
                        BaseModule.init_weights(self)
                    finally:
                        del self._dump_init_info
                _zero_linear_biases(students)
                for m, bias in conv_biases.items():
                    m.bias.copy_(bias)
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
        stage = int(self.stage)
        if getattr(self.teacher, 'origin', None):
            origin = self.teacher.origin
        elif stage > 0:
            origin = 'bootstrapped'
        elif _has_pretrained(self.init_cfg) or self._teacher_is_pretrained():
            origin = 'pretrained'
        elif self.init_teacher_from_student:
            origin = 'student_init'
        else:
            origin = 'random'
        depth = getattr(self.teacher, 'depth', None)
        return dict(
            origin=origin,
            depth=-1 if depth is None else int(depth),
            stage=stage)

    def _student_pretrained(self) -> bool:
        """Whether a ``Pretrained`` init loads the model or a student part."""
        return _has_pretrained(self.init_cfg) or any(
            _has_pretrained(getattr(m, 'init_cfg', None))
            for s in self.student_modules().values() for m in s.modules())

    def _teacher_is_pretrained(self) -> bool:
        return _has_pretrained(getattr(self.teacher, 'init_cfg', None))
