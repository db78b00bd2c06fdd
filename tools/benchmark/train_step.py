"""Time one dBOT pre-training step against the official code and MAE.

    python tools/benchmark/train_step.py --arch s --batch 8 --img 224 \\
        --official /tmp/dbot_official

Compares, at the same arch, batch, image size and mask ratio:

* ``dbot-fp32`` / ``dbot-bf16``: dbot_mm's ``DBOT`` built from
  ``configs/_base_/models/dbot.py`` with the optimizer of
  ``configs/_base_/schedules/dbot_pretrain_1600e.py``, stepped as mmengine's
  ``train_step`` does (bf16 through ``AutocastOptimWrapper``);
* ``official``: ``models_mae.py`` of a local clone of github
  liuxingbin/dbot (``--official PATH``; never vendored), stepped as its
  ``engine_pretrain.py`` does: ``torch.cuda.amp.autocast`` (a no-op on CPU, so
  fp32 there), ``loss.item()``, its ``NativeScalerWithGradNormCount``;
* ``mae-fp32`` / ``mae-bf16``: mmpretrain's ``MAE`` (the cost without a
  teacher);
* with ``--compile`` also ``dbot-fp32-compiled`` / ``dbot-bf16-compiled``:
  the same model with ``DBOT.loss`` under ``torch.compile``.

Shared, noisy machines move every timing; ratios are what this script is
for. Everything runs in one process, the timed steps of all implementations
are interleaved round-robin so that load drifts hit all of them alike,
medians are reported, and the matmul rate the FLOP shares refer to is
measured in the same run. Timings never belong in tests.
"""
import argparse
import contextlib
import copy
import importlib
import json
import math
import os
import os.path as osp
import platform
import statistics
import sys
import time
import types
import warnings
from functools import partial

# Runnable from a checkout without `pip install -e .`.
REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)

import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils import flop_counter  # noqa: E402

ARCHS = {
    # name: (embed_dims, num_layers, num_heads, patch_size)
    'tiny': (192, 12, 3, 16),
    's': (384, 12, 6, 16),
    'b': (768, 12, 12, 16),
    'l': (1024, 24, 16, 16),
    'h': (1280, 32, 16, 14),
}
DECODER = dict(decoder_embed_dim=512, decoder_depth=8, decoder_num_heads=16)
MASK_RATIO = 0.75
PHASES = ('encoder', 'decoder', 'teacher', 'loss', 'backward', 'optimizer')


# --------------------------------------------------------------- utilities
def sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def _sdpa_cpu_fwd(query, key, value, *args, out_shape=None, **kwargs):
    return flop_counter.sdpa_flop_count(query, key, value)


def _sdpa_cpu_bwd(grad_out, query, key, value, *args, out_shape=None,
                  **kwargs):
    return flop_counter.sdpa_backward_flop_count(grad_out, query, key, value)


def flop_mode():
    """FlopCounterMode that also counts the CPU flash-attention kernels.

    torch 2.14 has formulas for the CUDA SDPA kernels only; without these the
    attention of every fused implementation would count as free.
    """
    aten = torch.ops.aten
    custom = {}
    for name, fn in (('_scaled_dot_product_flash_attention_for_cpu',
                      _sdpa_cpu_fwd),
                     ('_scaled_dot_product_flash_attention_for_cpu_backward',
                      _sdpa_cpu_bwd)):
        if hasattr(aten, name):
            custom[getattr(aten, name)] = fn
    return flop_counter.FlopCounterMode(display=False, custom_mapping=custom)


def matmul_rate(dtype, device, n=2048, reps=5):
    """Dense matmul GFLOP/s of this machine, now, in ``dtype``."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    for _ in range(2):
        a @ b
    times = []
    for _ in range(reps):
        sync(device)
        t = time.perf_counter()
        a @ b
        sync(device)
        times.append(time.perf_counter() - t)
    return [2 * n**3 / t / 1e9 for t in times]


def tensor_bytes(tensors):
    """Bytes of distinct storages (shared and tied tensors counted once)."""
    seen, total = set(), 0
    for t in tensors:
        if t is None or not isinstance(t, torch.Tensor):
            continue
        storage = t.untyped_storage()
        key = (storage.data_ptr(), t.device)
        if key in seen:
            continue
        seen.add(key)
        total += storage.nbytes()
    return total


def state_tensors(modules, optimizer):
    for module in modules:
        yield from module.parameters()
        yield from module.buffers()
        for p in module.parameters():
            yield p.grad
    for state in optimizer.state.values():
        yield from state.values()


def cpu_step_peak(fn):
    """Peak bytes allocated during ``fn()`` above what was live before.

    CPU has no ``max_memory_allocated``; the profiler's allocation events,
    replayed in time order, give the same quantity exactly and, unlike the
    RSS high-water mark, independently of what else lives in this process.
    """
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) \
            as prof:
        fn()
    allocs = []
    stack = list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        ev = stack.pop()
        if ev.tag == _EventType.Allocation \
                and str(ev.extra_fields.device) == 'cpu':
            allocs.append((ev.start_time_ns, ev.extra_fields.alloc_size))
        stack.extend(ev.children)
    allocs.sort(key=lambda a: a[0])
    cur = peak = 0
    for _, size in allocs:
        cur += size
        peak = max(peak, cur)
    return peak


# ---------------------------------------------------------- implementations
class Impl:
    """One way to run a training step; subclasses fill in the phases."""

    name = ''
    precision = 'fp32'

    def __init__(self, device, batch, img):
        self.device = device
        self.inputs = torch.randn(batch, 3, img, img, device=device)

    # full step, exactly as the implementation runs in training
    def step(self):
        raise NotImplementedError

    # the same step cut into named phases (callables run in order)
    def phase_fns(self):
        raise NotImplementedError

    def static_tensors(self):
        raise NotImplementedError

    def run_phases(self, count_flops=False):
        times, flops, ctx = {}, {}, {}
        for name, fn in self.phase_fns():
            sync(self.device)
            mode = flop_mode() if count_flops else contextlib.nullcontext()
            t = time.perf_counter()
            with mode:
                fn(ctx)
            sync(self.device)
            times[name] = times.get(name, 0.) + time.perf_counter() - t
            if count_flops:
                flops[name] = flops.get(name, 0) + mode.get_total_flops()
        return times, flops

    def peak_bytes(self):
        static = tensor_bytes(list(self.static_tensors()) + [self.inputs])
        if self.device.type == 'cuda':
            sync(self.device)
            base = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.step()
            sync(self.device)
            extra = torch.cuda.max_memory_allocated(self.device) - base
        else:
            extra = cpu_step_peak(self.step)
        return static + extra


def _optimizer_cfg():
    from mmengine.config import Config
    cfg = Config.fromfile(
        osp.join(REPO, 'configs/_base_/schedules/dbot_pretrain_1600e.py'))
    return cfg.optim_wrapper.to_dict()


def build_optim_wrappers(model, optimizer_overrides):
    """One optimizer (one AdamW state) behind an fp32 and a bf16 wrapper."""
    from mmengine.optim import OptimWrapper, build_optim_wrapper
    from mmpretrain.registry import OPTIM_WRAPPERS
    cfg = _optimizer_cfg()
    cfg['optimizer'].update(optimizer_overrides)
    cfg.update(type='OptimWrapper')
    cfg.pop('dtype', None)
    cfg.pop('loss_scale', None)
    fp32 = build_optim_wrapper(model, cfg)
    bf16 = OPTIM_WRAPPERS.build(
        dict(type='AutocastOptimWrapper', dtype='bfloat16',
             optimizer=fp32.optimizer))
    assert isinstance(fp32, OptimWrapper)
    return fp32, bf16


class MMStep(Impl):
    """An mmpretrain model stepped like ``BaseModel.train_step``.

    The data preprocessor is left out (inputs are already normalised, as for
    the official code).
    """

    def __init__(self, name, model, wrapper, device, batch, img):
        super().__init__(device, batch, img)
        self.name = name
        self.model = model
        self.wrapper = wrapper
        self.precision = 'bf16' if getattr(wrapper, 'cast_dtype', None) \
            == torch.bfloat16 else 'fp32'

    def step(self):
        with self.wrapper.optim_context(self.model):
            losses = self.model.loss(self.inputs, None)
        loss, _ = self.model.parse_losses(losses)
        self.wrapper.update_params(loss)

    def static_tensors(self):
        return state_tensors([self.model], self.wrapper.optimizer)

    def _ctx(self):
        return self.wrapper.optim_context(self.model)

    def _backward(self, c):
        loss, _ = self.model.parse_losses(dict(loss=c['loss']))
        self.wrapper.backward(loss)

    def _optimizer(self, c):
        self.wrapper.step()
        self.wrapper.zero_grad()


class DBOTStep(MMStep):

    def phase_fns(self):
        m = self.model

        # DBOT.loss cut into its named steps, one phase each
        def encoder(c):
            with self._ctx():
                c['latent'], c['mask'], c['ids'], c['ids_masked'] = \
                    m.encode(self.inputs)

        def decoder(c):
            with self._ctx():
                c['pred'] = m.neck(c['latent'], c['ids'])

        def teacher(c):
            with self._ctx():
                c['target'] = m.teacher_forward(self.inputs)

        def loss(c):
            with self._ctx():
                c['loss'] = m.distill_loss(c['pred'], c['target'], c['mask'],
                                           c['ids_masked'])

        return [('encoder', encoder), ('decoder', decoder),
                ('teacher', teacher), ('loss', loss),
                ('backward', self._backward), ('optimizer', self._optimizer)]


class CompiledDBOTStep(DBOTStep):
    """``DBOTStep`` with the forward and loss (``DBOT.loss``) under
    ``torch.compile`` (default inductor); backward through AOTAutograd's
    compiled graph, the optimizer step eager, as after ``train_step``'s graph
    breaks. The first step compiles (keep ``--warmup`` >= 1). A compiled step
    has no phase boundaries: its phases are not timed, and its FLOPs are
    those of the eager phases (same arithmetic).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._loss = torch.compile(self.model.loss)

    def step(self):
        with self.wrapper.optim_context(self.model):
            losses = self._loss(self.inputs, None)
        loss, _ = self.model.parse_losses(losses)
        self.wrapper.update_params(loss)

    def run_phases(self, count_flops=False):
        if not count_flops:
            return {}, {}
        return super().run_phases(count_flops=True)


class MAEStep(MMStep):

    def phase_fns(self):
        m = self.model

        def encoder(c):
            with self._ctx():
                c['latent'], c['mask'], c['ids'] = m.backbone(self.inputs)

        def decoder(c):
            with self._ctx():
                c['pred'] = m.neck(c['latent'], c['ids'])

        def loss(c):
            with self._ctx():
                c['loss'] = m.head.loss(c['pred'], self.inputs, c['mask'])

        return [('encoder', encoder), ('decoder', decoder), ('loss', loss),
                ('backward', self._backward), ('optimizer', self._optimizer)]


def build_dbot(arch, img, drop_path, device, with_cp=False):
    from mmengine.config import Config
    from mmpretrain.registry import MODELS

    import dbot_mm  # noqa: F401
    dims, depth, heads, patch = ARCHS[arch]
    arch_cfg = dict(embed_dims=dims, num_layers=depth, num_heads=heads,
                    feedforward_channels=4 * dims)
    cfg = Config.fromfile(
        osp.join(REPO, 'configs/_base_/models/dbot.py')).dbot_model.to_dict()
    cfg['backbone'].update(arch=arch_cfg, img_size=img, patch_size=patch,
                           mask_ratio=MASK_RATIO, drop_path_rate=drop_path)
    cfg['neck'].update(num_patches=(img // patch)**2, embed_dim=dims,
                       drop_path_rate=drop_path, **DECODER)
    cfg['teacher'].update(arch=copy.deepcopy(arch_cfg), img_size=img,
                          patch_size=patch, depth=depth)
    if with_cp:
        cfg['backbone']['with_cp'] = True
        cfg['neck']['with_cp'] = True
    model = MODELS.build(cfg)
    model.init_weights()
    return model.to(device).train()


def build_mae(arch, img, drop_path, device, fast_attention=True):
    from mmpretrain.registry import MODELS

    from dbot_mm.models.backbones.dbot_vit import use_fast_attention
    dims, depth, heads, patch = ARCHS[arch]
    arch_cfg = dict(embed_dims=dims, num_layers=depth, num_heads=heads,
                    feedforward_channels=4 * dims)
    cfg = dict(
        type='MAE',
        backbone=dict(type='MAEViT', arch=arch_cfg, img_size=img,
                      patch_size=patch, mask_ratio=MASK_RATIO,
                      drop_path_rate=drop_path),
        neck=dict(type='MAEPretrainDecoder', num_patches=(img // patch)**2,
                  patch_size=patch, in_chans=3, embed_dim=dims, mlp_ratio=4.,
                  **DECODER),
        head=dict(type='MAEPretrainHead', norm_pix=True, patch_size=patch,
                  loss=dict(type='PixelReconstructionLoss', criterion='L2')),
        init_cfg=[dict(type='Xavier', layer='Linear',
                       distribution='uniform'),
                  dict(type='Constant', layer='LayerNorm', val=1.0,
                       bias=0.0)])
    model = MODELS.build(cfg)
    model.init_weights()
    if fast_attention:
        # Same attention kernels as dbot_mm's blocks, so that the DBOT/MAE
        # ratio measures the teacher and not an attention implementation.
        use_fast_attention(model)
    return model.to(device).train()


# ------------------------------------------------------------ official code
def import_official(path, timm_path=None):
    """Import ``models_mae`` and ``util.misc`` of an untouched clone.

    The clone predates numpy 1.24 (``np.float``) and torch 2.0
    (``torch._six``); both names are restored here for the import only, so
    the clone itself is never edited.
    """
    import numpy as np
    if timm_path:
        sys.path.insert(0, timm_path)
    for alias, value in (('float', float), ('int', int), ('bool', bool)):
        if not hasattr(np, alias):
            setattr(np, alias, value)
    if 'torch._six' not in sys.modules:
        six = types.ModuleType('torch._six')
        six.inf = math.inf
        six.string_classes = (str, bytes)
        sys.modules['torch._six'] = six
    sys.path.insert(0, path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            models_mae = importlib.import_module('models_mae')
            misc = importlib.import_module('util.misc')
    finally:
        sys.path.remove(path)
    import timm
    return models_mae, misc, timm


class OfficialStep(Impl):
    """``engine_pretrain.train_one_epoch``'s loop body, as released."""

    name = 'official'

    def __init__(self, path, arch, img, drop_path, device, batch,
                 attn='as-released', timm_path=None):
        super().__init__(device, batch, img)
        models_mae, misc, timm = import_official(path, timm_path)
        self.timm_version = timm.__version__
        fused_default = None
        if hasattr(timm, 'layers') and hasattr(timm.layers, 'set_fused_attn'):
            # timm 0.4.12 (the pinned version) has no fused attention; newer
            # timm would silently give the official code SDPA.
            fused_default = timm.layers.use_fused_attn()
            timm.layers.set_fused_attn(attn == 'fused')
        self.attn = attn if fused_default is not None else 'as-released'
        dims, depth, heads, patch = ARCHS[arch]
        make = partial(
            models_mae.MaskedAutoencoderViT, img_size=img, patch_size=patch,
            embed_dim=dims, num_heads=heads, mlp_ratio=4,
            norm_layer=partial(nn.LayerNorm, eps=1e-6), **DECODER)
        try:
            self.model = make(depth=depth, norm_feature_loss=True,
                              drop_path_rate=drop_path).to(device)
            self.teacher = make(depth=depth, decoder_depth=0,
                                drop_path_rate=0.).to(device)
        finally:
            if fused_default is not None:
                timm.layers.set_fused_attn(fused_default)
        self.teacher.load_state_dict(self.model.state_dict(), strict=False)
        for p in self.teacher.parameters():
            p.requires_grad = False
        self.model.train(True)
        # timm's add_weight_decay (main_pretrain.py): no decay on 1-D
        # params and biases.
        decay, no_decay = [], []
        for n, p in self.model.named_parameters():
            if not p.requires_grad:
                continue
            (no_decay if p.ndim <= 1 or n.endswith('.bias') else
             decay).append(p)
        self.optimizer = torch.optim.AdamW(
            [dict(params=no_decay, weight_decay=0.),
             dict(params=decay, weight_decay=0.05)],
            lr=1.5e-4 * 4096 / 256, betas=(0.9, 0.95))
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            self.loss_scaler = misc.NativeScalerWithGradNormCount()
        self.precision = ('fp16-amp' if device.type == 'cuda'
                          and self.loss_scaler._scaler.is_enabled() else
                          'fp32')

    def _autocast(self):
        # engine_pretrain.py uses torch.cuda.amp.autocast(): fp16 on CUDA,
        # nothing at all on CPU.
        if self.device.type == 'cuda':
            return torch.autocast('cuda', dtype=torch.float16)
        return contextlib.nullcontext()

    def step(self):
        with self._autocast():
            loss, _, _ = self.model(self.inputs, teacher=self.teacher,
                                    mask_ratio=MASK_RATIO, tlayernorm=0)
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            raise FloatingPointError(f'official loss is {loss_value}')
        self.loss_scaler(loss, self.optimizer, clip_grad=None,
                         parameters=self.model.parameters(), update_grad=True)
        self.optimizer.zero_grad()
        sync(self.device)  # torch.cuda.synchronize() in the loop

    def static_tensors(self):
        return state_tensors([self.model, self.teacher], self.optimizer)

    def phase_fns(self):
        m = self.model

        def encoder(c):
            with self._autocast():
                c['latent'], c['mask'], c['ids'] = m.forward_encoder(
                    self.inputs, MASK_RATIO)

        def decoder(c):
            with self._autocast():
                c['pred'] = m.forward_decoder(c['latent'], c['ids'])

        def teacher(c):
            with self._autocast():
                c['target'] = self.teacher.forward_teacher(
                    self.inputs, tlayernorm=0)

        def loss(c):
            with self._autocast():
                c['loss'] = m.forward_loss(c['target'].detach(), c['pred'],
                                           c['mask'])
            c['loss'].item()

        def backward(c):
            self.loss_scaler._scaler.scale(c['loss']).backward()

        def optimizer(c):
            s = self.loss_scaler._scaler
            s.unscale_(self.optimizer)
            get_norm = sys.modules['util.misc'].get_grad_norm_
            get_norm(m.parameters())
            s.step(self.optimizer)
            s.update()
            self.optimizer.zero_grad()

        return [('encoder', encoder), ('decoder', decoder),
                ('teacher', teacher), ('loss', loss), ('backward', backward),
                ('optimizer', optimizer)]


# --------------------------------------------------------------- reporting
def fmt_mib(n):
    return f'{n / 2**20:,.0f}'


def machine_name():
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--arch', default='s', choices=sorted(ARCHS))
    p.add_argument('--batch', type=int, default=8)
    p.add_argument('--img', type=int, default=224)
    p.add_argument('--precision', nargs='+', default=['fp32', 'bf16'],
                   choices=['fp32', 'bf16'],
                   help='precisions of dbot_mm and MAE')
    p.add_argument('--official', metavar='PATH',
                   help='local clone of github liuxingbin/dbot')
    p.add_argument('--official-attn', default='as-released',
                   choices=['as-released', 'fused'],
                   help='as-released: plain attention as timm 0.4.12 '
                   '(pinned by the official code); fused: SDPA of newer timm')
    p.add_argument('--official-timm', metavar='DIR',
                   help='import timm from DIR for the official code (e.g. '
                   'a `pip install --target DIR timm==0.4.12`)')
    p.add_argument('--no-mae', action='store_true')
    p.add_argument('--mae-attn', default='dbot',
                   choices=['dbot', 'mmpretrain'],
                   help="MAE's attention: dbot_mm's dispatcher (like for like "
                   "with DBOT) or mmpretrain's own fused SDPA")
    p.add_argument('--threads', type=int, default=0,
                   help='torch intra-op threads (0: torch default)')
    p.add_argument('--drop-path', type=float, default=0.2,
                   help='student encoder and decoder drop path (sdpr)')
    p.add_argument('--warmup', type=int, default=2)
    p.add_argument('--steps', type=int, default=5)
    p.add_argument('--compile', action='store_true',
                   help='also time dbot-<precision>-compiled: DBOT.loss under '
                   'torch.compile (CPU needs a C++ compiler)')
    p.add_argument('--with-cp', action='store_true',
                   help='activation checkpointing in dbot_mm encoder and '
                   'decoder')
    p.add_argument('--adamw', default='config',
                   choices=['config', 'foreach', 'fused'],
                   help='AdamW implementation of dbot_mm and MAE (config: '
                   'as the pretrain config builds it)')
    p.add_argument('--device', default='cuda' if torch.cuda.is_available()
                   else 'cpu')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--json', metavar='FILE', help='also write results here')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    from mmengine.logging import MMLogger
    MMLogger.get_instance('train_step_benchmark', log_level='ERROR')
    load_start = os.getloadavg()
    overrides = {'config': {}, 'foreach': dict(foreach=True),
                 'fused': dict(fused=True)}[args.adamw]

    impls = []
    dbot = build_dbot(args.arch, args.img, args.drop_path, device,
                      args.with_cp)
    fp32_w, bf16_w = build_optim_wrappers(dbot, overrides)
    wrappers = {'fp32': fp32_w, 'bf16': bf16_w}
    for prec in args.precision:
        impls.append(DBOTStep(f'dbot-{prec}', dbot, wrappers[prec], device,
                              args.batch, args.img))
    if args.compile:
        for prec in args.precision:
            impls.append(CompiledDBOTStep(f'dbot-{prec}-compiled', dbot,
                                          wrappers[prec], device, args.batch,
                                          args.img))
    official = None
    if args.official:
        official = OfficialStep(args.official, args.arch, args.img,
                                args.drop_path, device, args.batch,
                                args.official_attn, args.official_timm)
        impls.append(official)
    if not args.no_mae:
        mae = build_mae(args.arch, args.img, args.drop_path, device,
                        args.mae_attn == 'dbot')
        mfp32, mbf16 = build_optim_wrappers(mae, overrides)
        mw = {'fp32': mfp32, 'bf16': mbf16}
        for prec in args.precision:
            impls.append(MAEStep(f'mae-{prec}', mae, mw[prec], device,
                                 args.batch, args.img))
    for impl in impls[1:]:  # same images everywhere
        impl.inputs = impls[0].inputs

    dtypes = {'fp32': torch.float32, 'bf16': torch.bfloat16,
              'fp16-amp': torch.float16}
    rates = {p: [] for p in {i.precision for i in impls}}
    for p in rates:
        rates[p] += matmul_rate(dtypes[p], device)

    print(f'# warmup ({args.warmup} steps each)', flush=True)
    for impl in impls:
        for _ in range(args.warmup):
            impl.step()
    print('# FLOPs and phases', flush=True)
    res = {i.name: dict(precision=i.precision) for i in impls}
    for impl in impls:
        _, flops = impl.run_phases(count_flops=True)
        res[impl.name]['flops'] = flops
        res[impl.name]['phases'] = impl.run_phases()[0]
    print(f'# {args.steps} timed steps, interleaved', flush=True)
    times = {i.name: [] for i in impls}
    for _ in range(args.steps):
        for impl in impls:
            sync(device)
            t = time.perf_counter()
            impl.step()
            sync(device)
            times[impl.name].append(time.perf_counter() - t)
    for p in rates:
        rates[p] += matmul_rate(dtypes[p], device)
    print('# peak memory', flush=True)
    for impl in impls:
        res[impl.name]['peak_bytes'] = impl.peak_bytes()
    load_end = os.getloadavg()

    rate = {p: statistics.median(v) for p, v in rates.items()}
    for impl in impls:
        r = res[impl.name]
        r['step_s'] = statistics.median(times[impl.name])
        r['step_s_all'] = times[impl.name]
        r['images_per_s'] = args.batch / r['step_s']
        r['gflop'] = sum(r['flops'].values()) / 1e9
        r['gflop_per_s'] = r['gflop'] / r['step_s']
        r['matmul_share'] = r['gflop_per_s'] / rate[impl.precision]

    # ------------------------------------------------------------- print
    dims, depth, heads, patch = ARCHS[args.arch]
    print()
    print(f'## {args.arch} ({dims}x{depth}, {heads} heads, patch {patch}), '
          f'batch {args.batch}, {args.img} px, mask {MASK_RATIO}, drop path '
          f'{args.drop_path}, decoder 512x8')
    print(f'device: {device.type} — {machine_name() if device.type == "cpu" else torch.cuda.get_device_name(device)}; '  # noqa: E501
          f'torch {torch.__version__}, {torch.get_num_threads()} threads; '
          f'load avg {load_start[0]:.2f} -> {load_end[0]:.2f}')
    print('matmul rate (2048^3, median of the runs before and after): ' +
          ', '.join(f'{p} {v:.0f} GFLOP/s' for p, v in rate.items()))
    print(f'AdamW of dbot_mm and MAE: {args.adamw}; MAE attention: '
          f'{args.mae_attn}; activation checkpointing: {args.with_cp}')
    if official is not None:
        print(f'official: timm {official.timm_version}, attention '
              f'{official.attn}, torch AdamW defaults, its loss scaler')
    print()
    print('| impl | precision | step s (median) | min–max | images/s | '
          'peak MiB | GFLOP/step | GFLOP/s | share of matmul rate |')
    print('|---|---|---|---|---|---|---|---|---|')
    for impl in impls:
        r = res[impl.name]
        print(f"| {impl.name} | {r['precision']} | {r['step_s']:.3f} | "
              f"{min(r['step_s_all']):.3f}–{max(r['step_s_all']):.3f} | "
              f"{r['images_per_s']:.2f} | {fmt_mib(r['peak_bytes'])} | "
              f"{r['gflop']:.1f} | {r['gflop_per_s']:.0f} | "
              f"{100 * r['matmul_share']:.0f} % |")
    print()
    print('phases, seconds (one instrumented step each; device synced '
          'between phases):')
    print()
    print('| impl | ' + ' | '.join(PHASES) + ' | sum |')
    print('|---|' + '---|' * (len(PHASES) + 1))
    for impl in impls:
        ph = res[impl.name]['phases']
        cells = [f'{ph[k]:.3f}' if k in ph else '–' for k in PHASES]
        total = f'{sum(ph.values()):.3f}' if ph else '–'
        print(f'| {impl.name} | ' + ' | '.join(cells) + f' | {total} |')
    print()
    print('| impl | ' + ' | '.join(f'{k} GFLOP' for k in PHASES[:4]) +
          ' | backward GFLOP |')
    print('|---|' + '---|' * 5)
    for impl in impls:
        fl = res[impl.name]['flops']
        cells = [f'{fl[k] / 1e9:.2f}' if k in fl else '–'
                 for k in PHASES[:5]]
        print(f'| {impl.name} | ' + ' | '.join(cells) + ' |')

    print()
    print('ratios (same run). Step-time ratios three ways: of the medians, '
          'of the fastest steps (the least disturbed by other load), and the '
          'median over rounds of the ratio within a round:')
    print()
    print('| ratio | medians | fastest | per round |')
    print('|---|---|---|---|')
    ratios = {}

    def time_ratio(key, text, a, b):
        ta, tb = times[a], times[b]
        values = (statistics.median(ta) / statistics.median(tb),
                  min(ta) / min(tb),
                  statistics.median(x / y for x, y in zip(ta, tb)))
        ratios[key] = dict(zip(('median', 'fastest', 'per_round'), values))
        print(f'| {text} | ' + ' | '.join(f'{v:.3f}' for v in values) + ' |')

    def ratio(key, text, value):
        ratios[key] = value
        print(f'| {text} | {value:.3f} | | |')

    if official is not None:
        o = res['official']
        for prec in args.precision:
            d = res[f'dbot-{prec}']
            time_ratio(f'speedup_{prec}_vs_official',
                       f'official step / dbot-{prec} step', 'official',
                       f'dbot-{prec}')
            ratio(f'memory_{prec}_vs_official',
                  f'dbot-{prec} peak memory / official peak memory',
                  d['peak_bytes'] / o['peak_bytes'])
    if not args.no_mae:
        for prec in args.precision:
            d, m = res[f'dbot-{prec}'], res[f'mae-{prec}']
            f = d['gflop'] / m['gflop']
            time_ratio(f'dbot_mae_time_{prec}',
                       f'dbot-{prec} step / mae-{prec} step', f'dbot-{prec}',
                       f'mae-{prec}')
            ratio(f'dbot_mae_flops_{prec}',
                  f'dbot-{prec} FLOPs / mae-{prec} FLOPs', f)
            print(f'| (dbot-{prec} / mae-{prec} step) / (FLOP ratio) | ' +
                  ' | '.join(f'{v / f:.3f}' for v in
                             ratios[f'dbot_mae_time_{prec}'].values()) +
                  ' |')
    if args.compile:
        for prec in args.precision:
            time_ratio(f'compile_speedup_{prec}',
                       f'dbot-{prec} step / dbot-{prec}-compiled step',
                       f'dbot-{prec}', f'dbot-{prec}-compiled')
    if args.json:
        with open(args.json, 'w') as fh:
            json.dump(dict(args=vars(args), results=res, ratios=ratios,
                           matmul_rate=rate, load=[load_start, load_end]),
                      fh, indent=1, default=str)
    return res, ratios


if __name__ == '__main__':
    main()
