"""Plumbing the models share: init configs, seeded re-initialisation,
autocast queries and the student geometry a config implies."""
from contextlib import contextmanager
from typing import Dict, Iterable, List, Optional

import torch
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS
from torch import nn


def is_pretrained(cfg: dict) -> bool:
    """Whether one init config entry loads a checkpoint."""
    return cfg.get('type') == 'Pretrained' or (
        isinstance(cfg.get('type'), type)
        and cfg['type'].__name__ == 'PretrainedInit')


def has_pretrained(init_cfg) -> bool:
    """Whether an ``init_cfg`` (dict, list or None) loads a checkpoint."""
    cfgs = [init_cfg] if isinstance(init_cfg, dict) else (init_cfg or [])
    return any(is_pretrained(c) for c in cfgs)


@contextmanager
def without_pretrained_init(modules: Iterable[nn.Module]):
    """Drop ``Pretrained`` entries from the modules' ``init_cfg`` for the
    duration: a re-initialisation must redraw, not reload a checkpoint."""
    saved = []
    for m in modules:
        cfg = getattr(m, 'init_cfg', None)
        if not cfg:
            continue
        cfgs = [cfg] if isinstance(cfg, dict) else list(cfg)
        kept = [c for c in cfgs if not is_pretrained(c)]
        if len(kept) != len(cfgs):
            saved.append((m, cfg))
            m.init_cfg = kept or None
    try:
        yield
    finally:
        for m, cfg in saved:
            m.init_cfg = cfg


@torch.no_grad()
def zero_linear_biases(modules: Iterable[nn.Module]) -> None:
    """Every Linear bias exactly 0, as the official ``initialize_weights``.

    mmpretrain's ``TransformerEncoderLayer.init_weights`` runs after the
    model-wide ``init_cfg`` and draws its FFN biases from N(0, 1e-6).
    """
    for m in modules:
        if isinstance(m, nn.Linear) and m.bias is not None:
            m.bias.zero_()


@contextmanager
def seeded(seed: int, device: torch.device):
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


def quiet_init_weights(model: BaseModule) -> None:
    """``BaseModule.init_weights`` of ``model`` without the per-parameter
    init table, which went to the log at build time already."""
    model._dump_init_info = lambda *args, **kwargs: None
    try:
        BaseModule.init_weights(model)
    finally:
        del model._dump_init_info


@torch.no_grad()
def redraw(model: BaseModule, modules: List[nn.Module], seed: int,
           device: torch.device) -> None:
    """Re-initialise ``modules`` (all of ``model``'s that take part) in place
    from ``seed``, with the steps of a fresh build.

    Each layer's ``reset_parameters``, the mmengine ``init_weights`` chain
    with ``model``'s ``init_cfg`` (``Pretrained`` entries skipped), every
    Linear bias exactly 0. Conv biases keep their values. The global RNG
    streams are left as they were.
    """
    conv_biases = {m: m.bias.detach().clone() for m in modules
                   if isinstance(m, nn.Conv2d) and m.bias is not None}
    with seeded(int(seed), device), \
            without_pretrained_init([model] + modules):
        for m in modules:
            if hasattr(m, 'reset_parameters'):
                m.reset_parameters()
        for m in [model] + modules:
            if isinstance(m, BaseModule):
                m._is_init = False
        quiet_init_weights(model)
    zero_linear_biases(modules)
    for m, bias in conv_biases.items():
        m.bias.copy_(bias)


def autocast_dtype(device_type: str) -> Optional[torch.dtype]:
    """The dtype autocast runs ``device_type`` in, or None when it is off."""
    try:
        if torch.is_autocast_enabled(device_type):
            return torch.get_autocast_dtype(device_type)
    except (TypeError, AttributeError):  # torch < 2.4: no per-device query
        pass
    return None


def student_geometry(backbone: dict) -> Dict[str, object]:
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


def fill_missing(cfg, **values):
    """A config dict with the ``values`` it leaves out (or sets to None);
    a built module is returned as it is."""
    if not isinstance(cfg, dict):
        return cfg
    return {**cfg, **{k: v for k, v in values.items()
                      if v is not None and cfg.get(k) is None}}


def check_sizes(owner: str, student: nn.Module, neck: nn.Module,
                target: nn.Module, neck_in: str, neck_out: str) -> None:
    """One build-time ``ValueError`` naming every size that does not fit:
    student width vs ``neck.<neck_in>``, target width vs
    ``neck.<neck_out>``, and the patch counts of student, target and neck.
    A size a module does not state is not checked."""
    s_len = getattr(student, 'num_patches', None)
    pairs = [
        (f'target width (teacher out_dims / arch.embed_dims={{}}) != '
         f'neck.{neck_out}={{}}', target.out_dims,
         getattr(neck, neck_out, None)),
        (f'student width (backbone.arch.embed_dims={{}}) != '
         f'neck.{neck_in}={{}}', getattr(student, 'embed_dims', None),
         getattr(neck, neck_in, None)),
        ('student has {} patches but the teacher returns {}: set '
         'teacher.img_size / patch_size (or out_size) to match', s_len,
         getattr(target, 'num_patches', None)),
        ('student has {} patches but neck.num_patches={}', s_len,
         getattr(neck, 'num_patches', None)),
    ]
    errors = [message.format(a, b) for message, a, b in pairs
              if None not in (a, b) and a != b]
    if errors:
        raise ValueError(f'{owner} config mismatch: ' + '; '.join(errors))


def with_checkpoint(init_cfg, checkpoint: Optional[str]) -> list:
    """``init_cfg`` plus a ``Pretrained`` entry loading ``checkpoint``.

    mmengine applies ``Pretrained`` last, so the other entries stay the
    fallback for keys the checkpoint lacks.
    """
    cfgs = [init_cfg] if isinstance(init_cfg, dict) else list(init_cfg)
    return cfgs + [dict(type='Pretrained', checkpoint=checkpoint)]
