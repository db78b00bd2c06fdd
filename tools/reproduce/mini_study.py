"""dBOT's claims at laptop scale: one command, CPU only, Fashion-MNIST.

    python tools/reproduce/mini_study.py                 # the study
    python tools/reproduce/mini_study.py --quick         # plumbing, minutes
    python tools/reproduce/mini_study.py --preset reference   # official-code reference recipe

The study pretrains one small ViT four ways with equal total epochs and
several seeds, through the project's configs and mmengine's Runner:

* ``mae``: pixel target (mmpretrain ``MAE``, normalised pixels, L2);
* ``random_teacher``: dBOT's loss with the random initial network as the
  teacher for the whole run (1 stage);
* ``dbot_2stage`` / ``dbot_3stage``: the teacher is bootstrapped from the
  student at every stage boundary, the student re-initialised
  (``StageBootstrapHook``).

Each run is scored by kNN (``knn_classify``: cosine, k=20, T=0.07, mean
patch token) and a linear probe on frozen features; ``KNNMonitorHook`` logs
a kNN curve on a subset every epoch. The best method's seed-0 encoder and a
random-init encoder are then fine-tuned on the mosaic sets: Cascade Mask
R-CNN (bbox / segm mAP by mmdet's CocoMetric, pycocotools) and UperNet
(mIoU by mmseg's IoUMetric). Attention-distance and singular-value plots
come from ``dbot_mm.analysis``. The results go to ``docs/mini_study.md``
(with ``--preset full``) or to the work dir, and every finished run is
cached in ``<work dir>/<run>/result.json`` so an interrupted study resumes
where it stopped (``--force`` reruns).

Each preset is a config, ``configs/reproduce/mini-study_<preset>.py``: the
sizes of every run and, in its ``mini_study`` dict, the seeds, methods,
evaluation and transfer settings; this script changes per run only the
method's model and stages, the seed and the paths. The report's text is
``templates/mini_study.md``.
"""
import argparse
import copy
import datetime
import json
import os
import os.path as osp
import platform
import re
import string
import sys
import time
from collections.abc import Mapping
from typing import Dict, List

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)

import numpy as np  # noqa: E402
import torch  # noqa: E402

CLASSES = ('T-shirt_top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal',
           'Shirt', 'Sneaker', 'Bag', 'Ankle_boot')
CONFIG_DIR = osp.join(REPO, 'configs', 'reproduce')
# one dBOT config per preset: the sizes of every run and, in its
# `mini_study` dict, the study around them
PRESET_CONFIGS = {
    name: osp.join(CONFIG_DIR, f'mini-study_{name}.py')
    for name in ('full', 'quick', 'reference')
}
TASK_CONFIGS = dict(
    det=osp.join(CONFIG_DIR, 'mini-study_cascade-mask-rcnn_mosaic.py'),
    seg=osp.join(CONFIG_DIR, 'mini-study_upernet_mosaic.py'))
TEMPLATE = osp.join(osp.dirname(osp.abspath(__file__)), 'templates',
                    'mini_study.md')

# name: (label, model (dBOT or its MAE baseline), number of stages)
METHODS = {
    'mae': ('MAE (pixel target)', 'mae', 1),
    'random_teacher': ('random teacher, 1 stage', 'dbot', 1),
    'dbot_2stage': ('dBOT, 2 stages', 'dbot', 2),
    'dbot_3stage': ('dBOT, 3 stages', 'dbot', 3),
}
REFERENCE_KNN = {'random init': 62.3, 'after stage 1': 72.5,
                 'after stage 2': 73.7}


def load_preset(name: str) -> dict:
    """The settings ``p`` the study reads, taken from the preset's config:
    the run sizes from the config itself, the rest from ``mini_study``."""
    from mmengine.config import Config
    cfg = Config.fromfile(PRESET_CONFIGS[name])
    s = cfg.mini_study.to_dict()
    neck = cfg.model.neck
    knn = next(h for h in cfg.custom_hooks if h['type'] == 'KNNMonitorHook')
    return dict(
        seeds=s['seeds'],
        methods=s['methods'],
        num_train=s['num_train'], num_val=s['num_val'],
        arch=cfg.model.backbone.arch.to_dict(),
        decoder=dict(dims=neck.decoder_embed_dim, depth=neck.decoder_depth,
                     heads=neck.decoder_num_heads),
        epochs=cfg.train_cfg.max_epochs, warmup=cfg.warmup_epochs,
        batch_size=cfg.train_dataloader.batch_size, blr=s['blr'],
        knn_monitor=tuple(cfg.knn_monitor_size),
        knn_interval=knn['interval'],
        analysis_images=s['analysis_images'],
        mosaic=s['mosaic'], det=s['det'], seg=s['seg'],
        config=osp.relpath(PRESET_CONFIGS[name], REPO))


class _Presets(Mapping):
    """Preset name -> :func:`load_preset`, parsed on first use (importing
    this module for its helpers parses no config)."""

    def __init__(self):
        self._loaded = {}

    def __getitem__(self, name):
        if name not in PRESET_CONFIGS:
            raise KeyError(name)
        if name not in self._loaded:
            self._loaded[name] = load_preset(name)
        return self._loaded[name]

    def __iter__(self):
        return iter(PRESET_CONFIGS)

    def __len__(self):
        return len(PRESET_CONFIGS)


PRESETS = _Presets()


# --------------------------------------------------------------------- util
def log(msg: str) -> None:
    print(f'[mini_study {time.strftime("%H:%M:%S")}] {msg}', flush=True)


def mean_std(values: List[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return 'n/a'
    if len(values) == 1:
        return f'{values[0]:.1f}'
    return f'{np.mean(values):.1f} ± {np.std(values, ddof=1):.1f}'


def stage_bounds(epochs: int, num_stages: int) -> List[int]:
    if epochs % num_stages:
        raise ValueError(f'{epochs} epochs do not split into {num_stages} '
                         'equal stages')
    step = epochs // num_stages
    return [i * step for i in range(num_stages + 1)]


def dense_out_indices(depth: int) -> tuple:
    """Blocks (3, 5, 7, 11) of 12, scaled to ``depth``."""
    return tuple(
        max(0, int(round(depth * f)) - 1) for f in (4 / 12, 6 / 12, 8 / 12,
                                                   1.))


def machine_info() -> Dict[str, str]:
    cpu = platform.processor() or ''
    try:
        with open('/proc/cpuinfo') as f:
            names = [ln.split(':', 1)[1].strip() for ln in f
                     if ln.startswith('model name')]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    try:
        load = ' '.join(f'{x:.1f}' for x in os.getloadavg())
    except OSError:
        load = 'n/a'
    return dict(cpu=cpu, cores=str(os.cpu_count()),
                torch_threads=str(torch.get_num_threads()),
                torch=torch.__version__, python=platform.python_version(),
                load_at_start=load)


# --------------------------------------------------------------------- data
def prepare_data(p: dict, root: str) -> Dict[str, str]:
    from dbot_mm.datasets import convert_fashion_mnist, generate_mosaic
    fm = osp.join(root, 'fashion_mnist')
    counts = convert_fashion_mnist(fm, num_train=p['num_train'],
                                   num_val=p['num_val'], pad_to=32, seed=0)
    log(f'Fashion-MNIST: {counts} in {fm}')
    out = dict(fashion_mnist=fm)
    if p.get('mosaic'):
        m = p['mosaic']
        mo = osp.join(root, 'fashion_mosaic')
        counts = generate_mosaic(
            mo, num_train=m['num_train'], num_val=m['num_val'],
            canvas_size=m['canvas'], objects_per_image=m['objects'],
            scale_range=m['scale'], seed=0)
        log(f'mosaic: {counts} in {mo}')
        out['mosaic'] = mo
    return out


def read_split(fm_root: str, split: str):
    """Paths and labels of a converted split, in annotation-file order."""
    paths, labels = [], []
    with open(osp.join(fm_root, 'meta', f'{split}.txt')) as f:
        for line in f:
            name, label = line.split()
            paths.append(osp.join(fm_root, split, name))
            labels.append(int(label))
    return paths, torch.tensor(labels)


class EvalData:
    """Train (kNN bank, probe training) and val images held in memory,
    normalised as the pretraining configs do."""

    def __init__(self, fm_root: str, mean, std):
        from dbot_mm.analysis import load_images
        self.train_paths, self.train_labels = read_split(fm_root, 'train')
        self.val_paths, self.val_labels = read_split(fm_root, 'val')
        self.train = load_images(self.train_paths, (32, 32), mean, std,
                                 to_rgb=False)
        self.val = load_images(self.val_paths, (32, 32), mean, std,
                               to_rgb=False)


@torch.no_grad()
def embed(backbone, images: torch.Tensor, batch_size: int = 256):
    """Mean patch token of the un-masked encoder (final norm applied), the
    feature KNNMonitorHook uses."""
    was = backbone.training
    backbone.eval()
    feats = []
    for x in images.split(batch_size):
        out = backbone(x, mask=None)
        out = out[-1] if isinstance(out, (tuple, list)) else out
        feats.append(out[:, 1:].mean(1).float())
    backbone.train(was)
    return torch.cat(feats)


def score(backbone, data: EvalData) -> Dict[str, float]:
    from dbot_mm.analysis import linear_probe
    from dbot_mm.engine.hooks.knn_monitor_hook import knn_classify
    tr, va = embed(backbone, data.train), embed(backbone, data.val)
    knn = knn_classify(tr, data.train_labels, va, k=20, T=0.07,
                       num_classes=10)
    lin = linear_probe(tr, data.train_labels, va, num_classes=10)
    return dict(
        knn=float((knn == data.val_labels).float().mean() * 100),
        linear=float((lin == data.val_labels).float().mean() * 100))


def analyse(backbone, images: torch.Tensor) -> Dict[str, list]:
    from dbot_mm.analysis import (attention_distance,
                                  normalized_singular_values, token_features)
    dist = attention_distance(backbone, images)
    feats = token_features(backbone, images, layers='last', tokens='patch')
    sv = normalized_singular_values(next(iter(feats.values()))).numpy()
    return dict(attention_distance=dist.tolist(), singular_values=sv.tolist())


# ---------------------------------------------------------------- pretrain
def pretrain_cfg(p: dict, method: str, seed: int, data_root: str,
                 work_dir: str, verbose: bool):
    """The preset's config with what one run changes: the method's model
    and stages, the seed and the paths."""
    from mmengine.config import Config

    from dbot_mm.engine.schedules import stage_lr_schedulers
    from dbot_mm.utils.config_arch import mae_model
    _, kind, num_stages = METHODS[method]
    cfg = Config.fromfile(osp.join(REPO, p['config']))
    stages = stage_bounds(cfg.train_cfg.max_epochs, num_stages)
    hooks = [h for h in cfg.custom_hooks
             if h['type'] != 'StageBootstrapHook']
    if kind == 'mae':
        bb = cfg.model.backbone
        cfg.model = mae_model(bb.arch, bb.img_size, bb.patch_size,
                              cfg.model.neck)
    else:  # with one stage too: the hook checks the teacher depth
        hooks.insert(0, dict(type='StageBootstrapHook', stages=stages,
                             teacher_depths=[cfg.model.teacher.depth] *
                             num_stages))
    cfg.param_scheduler = stage_lr_schedulers(
        stages, warmup_epochs=cfg.warmup_epochs)
    for h in hooks:
        if h['type'] == 'KNNMonitorHook':
            for loader in (h['train_dataloader'], h['val_dataloader']):
                loader['dataset']['data_root'] = data_root
    cfg.custom_hooks = hooks
    cfg.train_dataloader.dataset.data_root = data_root
    cfg.randomness = dict(seed=seed, diff_rank_seed=False)
    cfg.work_dir = work_dir
    cfg.experiment_name = f'{method}_seed{seed}_{time.time_ns()}'
    cfg.log_level = 'INFO' if verbose else 'WARNING'
    cfg.launcher = 'none'
    return cfg, stages


def knn_curve(runner) -> List[List[float]]:
    """[epoch, kNN top-1] pairs the monitor wrote to the scalars file."""
    path = osp.join(runner.log_dir, 'vis_data', 'scalars.json')
    curve = []
    if osp.isfile(path):
        with open(path) as f:
            for line in f:
                row = json.loads(line)
                if 'knn/top1' in row:
                    curve.append([int(row['step']), float(row['knn/top1'])])
    return curve


def run_pretrain(p, method, seed, data, paths, work_root, args):
    from mmengine.runner import Runner
    run_dir = osp.join(work_root, f'{method}_seed{seed}')
    result_file = osp.join(run_dir, 'result.json')
    if osp.isfile(result_file) and not args.force:
        with open(result_file) as f:
            result = json.load(f)
        if result.get('preset_key') == preset_key(p):
            log(f'{method} seed {seed}: cached ({result_file})')
            return result
    cfg, stages = pretrain_cfg(p, method, seed, paths['fashion_mnist'],
                               run_dir, args.verbose)
    log(f'{method} seed {seed}: pretraining {p["epochs"]} epochs, stages '
        f'{stages}, {p["num_train"]} images, batch {p["batch_size"]}')
    t0 = time.time()
    runner = Runner.from_cfg(cfg)
    runner.train()
    train_s = time.time() - t0
    model = runner.model
    scores = score(model.backbone, data)
    props = analyse(model.backbone, data.val[:p['analysis_images']])
    ckpt = osp.join(run_dir, f'epoch_{p["epochs"]}.pth')
    result = dict(method=method, seed=seed, stages=stages,
                  train_seconds=round(train_s, 1), checkpoint=ckpt,
                  knn_curve=knn_curve(runner), preset_key=preset_key(p),
                  **scores, **props)
    with open(result_file, 'w') as f:
        json.dump(result, f)
    log(f'{method} seed {seed}: kNN {scores["knn"]:.1f} linear '
        f'{scores["linear"]:.1f} ({train_s / 60:.1f} min)')
    del runner, model
    return result


def untrained_backbone(model_cfg, seed: int):
    """The student encoder as a run with ``seed`` starts it."""
    from mmengine.registry import init_default_scope
    from mmengine.runner import set_random_seed
    from mmpretrain.registry import MODELS
    init_default_scope('mmpretrain')
    set_random_seed(seed)
    model = MODELS.build(model_cfg)
    model.init_weights()
    return model.backbone


def random_init(p, seed, data, paths, work_root, args):
    """Scores of the untrained student (dBOT's initialisation)."""
    result_file = osp.join(work_root, f'random_init_seed{seed}.json')
    if osp.isfile(result_file) and not args.force:
        with open(result_file) as f:
            result = json.load(f)
        if result.get('preset_key') == preset_key(p):
            return result
    cfg, _ = pretrain_cfg(p, 'random_teacher', seed, paths['fashion_mnist'],
                          work_root, args.verbose)
    backbone = untrained_backbone(cfg.model, seed)
    scores = score(backbone, data)
    props = analyse(backbone, data.val[:p['analysis_images']])
    result = dict(method='random_init', seed=seed, preset_key=preset_key(p),
                  **scores, **props)
    os.makedirs(work_root, exist_ok=True)
    with open(result_file, 'w') as f:
        json.dump(result, f)
    log(f'random init seed {seed}: kNN {scores["knn"]:.1f} linear '
        f'{scores["linear"]:.1f}')
    return result


def preset_key(p: dict) -> str:
    keep = {k: p[k] for k in ('num_train', 'num_val', 'arch', 'decoder',
                              'epochs', 'warmup', 'batch_size', 'blr',
                              'knn_monitor', 'knn_interval')}
    return json.dumps(keep, sort_keys=True)


# ---------------------------------------------------------------- transfer
def task_cfg(task, p, checkpoint, paths, work_dir, seed, verbose):
    """The det / seg config of one fine-tuning run. ``p`` needs only
    ``arch``, ``mosaic['canvas']`` and ``p[task]`` (the schedule), so that
    other studies pass their own."""
    from mmengine.config import Config

    from dbot_mm.engine.schedules import step_lr_schedulers
    cfg = Config.fromfile(TASK_CONFIGS[task])
    if p['mosaic']['canvas'] != cfg.canvas:
        raise ValueError(f'{TASK_CONFIGS[task]} is written for '
                         f'{cfg.canvas} px canvases, the preset has '
                         f'{p["mosaic"]["canvas"]}')
    arch = copy.deepcopy(p['arch'])
    bb = cfg.model.backbone
    bb.arch = arch
    bb.out_indices = dense_out_indices(arch['num_layers'])
    bb.init_cfg = None if checkpoint is None else dict(
        type='Pretrained', checkpoint=checkpoint, prefix='backbone.')
    width = arch['embed_dims']
    t = p[task]
    if task == 'det':
        root = osp.join(paths['mosaic'], 'coco') + '/'
        cfg.model.neck.in_channels = [width] * 4
        for ev in (cfg.val_evaluator, cfg.test_evaluator):
            ev.ann_file = root + 'annotations/instances_val2017.json'
        e = t['epochs']
        cfg.train_cfg.update(max_epochs=e, val_interval=e)
        cfg.param_scheduler = step_lr_schedulers(
            e, milestones=[max(1, e - 1)], warmup_iters=t['warmup'])
        cfg.default_hooks.checkpoint.update(interval=e)
    else:
        root = osp.join(paths['mosaic'], 'ade')
        cfg.model.decode_head.in_channels = [width] * 4
        cfg.model.auxiliary_head.in_channels = width
        it, warm = t['iters'], t['warmup']
        cfg.train_cfg.update(max_iters=it, val_interval=it)
        cfg.param_scheduler = [
            dict(type='LinearLR', start_factor=1e-6, by_epoch=False,
                 begin=0, end=warm),
            dict(type='PolyLR', eta_min=0.0, power=1.0, begin=warm, end=it,
                 by_epoch=False)
        ]
        cfg.default_hooks.checkpoint.update(interval=it)
    for loader in (cfg.train_dataloader, cfg.val_dataloader,
                   cfg.test_dataloader):
        loader.dataset.data_root = root
    cfg.train_dataloader.batch_size = t['batch_size']
    cfg.optim_wrapper.optimizer.lr = t['lr']
    cfg.randomness = dict(seed=seed)
    cfg.work_dir = work_dir
    cfg.experiment_name = f'{task}_{osp.basename(work_dir)}_{time.time_ns()}'
    # mmdet / mmseg name their visualizer 'visualizer': a second run in
    # this process would reuse the first one's (and its log dir).
    cfg.visualizer.name = cfg.experiment_name
    cfg.log_level = 'INFO' if verbose else 'WARNING'
    cfg.launcher = 'none'
    return cfg


TASK_METRICS = dict(det=('coco/bbox_mAP', 'coco/segm_mAP'),
                    seg=('mIoU', ))


def run_task(task, p, name, checkpoint, paths, work_root, args):
    from mmengine.runner import Runner
    run_dir = osp.join(work_root, f'{task}_{name}')
    result_file = osp.join(run_dir, 'result.json')
    key = preset_key(p) + json.dumps([p[task], p['mosaic'], checkpoint])
    if osp.isfile(result_file) and not args.force:
        with open(result_file) as f:
            result = json.load(f)
        if result.get('key') == key:
            log(f'{task} {name}: cached ({result_file})')
            return result
    cfg = task_cfg(task, p, checkpoint, paths, run_dir, 0, args.verbose)
    log(f'{task} {name}: fine-tuning from '
        f'{checkpoint or "random initialisation"}')
    t0 = time.time()
    runner = Runner.from_cfg(cfg)
    runner.train()
    metrics = {}
    for m in TASK_METRICS[task]:
        buf = runner.message_hub.get_scalar(f'val/{m}')
        value = float(buf.current())
        metrics[m] = value * 100 if task == 'det' else value
    result = dict(task=task, name=name, checkpoint=checkpoint, key=key,
                  seconds=round(time.time() - t0, 1), **metrics)
    with open(result_file, 'w') as f:
        json.dump(result, f)
    log(f'{task} {name}: ' + ', '.join(f'{k} {v:.1f}'
                                        for k, v in metrics.items()) +
        f' ({result["seconds"] / 60:.1f} min)')
    del runner
    return result


# ------------------------------------------------------------------- report
def plot_knn_curves(results, p, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for i, method in enumerate(p['methods']):
        runs = [r for r in results if r['method'] == method and r['knn_curve']]
        if not runs:
            continue
        epochs = [e for e, _ in runs[0]['knn_curve']]
        vals = np.array([[v for _, v in r['knn_curve']] for r in runs
                         if len(r['knn_curve']) == len(epochs)])
        mean = vals.mean(0)
        ax.plot(epochs, mean, marker='o', ms=3, color=f'C{i}',
                label=METHODS[method][0])
        if len(vals) > 1:
            std = vals.std(0, ddof=1)
            ax.fill_between(epochs, mean - std, mean + std, color=f'C{i}',
                            alpha=0.15)
        for b in runs[0]['stages'][1:-1]:
            ax.axvline(b, color=f'C{i}', ls=':', lw=0.8)
    ax.set_xlabel('epoch (dotted: stage boundaries)')
    ax.set_ylabel('kNN top-1 (%)')
    bank, queries = p['knn_monitor']
    ax.set_title(f'kNN monitor ({bank} bank / {queries} queries), '
                 f'mean over {len(p["seeds"])} seed(s)', fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def make_plots(results, inits, p, fig_dir):
    from dbot_mm.analysis import (plot_attention_distance,
                                  plot_singular_values,
                                  uniform_attention_distance,
                                  write_attention_distance_csv,
                                  write_singular_values_csv)
    os.makedirs(fig_dir, exist_ok=True)
    plot_knn_curves(results, p, osp.join(fig_dir, 'knn_curve.png'))
    att, sv = {}, {}
    groups = [('random init', inits)] + [
        (METHODS[m][0], [r for r in results if r['method'] == m])
        for m in p['methods']
    ]
    for label, runs in groups:
        if runs:
            att[label] = np.mean(
                [np.array(r['attention_distance']) for r in runs], 0)
            sv[label] = {p['arch']['num_layers'] - 1: np.mean(
                [np.array(r['singular_values']) for r in runs], 0)}
    ref = uniform_attention_distance(8, 4)
    plot_attention_distance(
        att, osp.join(fig_dir, 'attention_distance.png'),
        title=f'mean attention distance, {p["analysis_images"]} val images, '
        f'mean over seeds', max_distance=ref)
    write_attention_distance_csv(att, osp.join(fig_dir,
                                               'attention_distance.csv'))
    plot_singular_values(sv, osp.join(fig_dir, 'singular_values.png'),
                         title='last block, patch tokens, mean over seeds')
    write_singular_values_csv(sv, osp.join(fig_dir, 'singular_values.csv'))


def _paired(results, method, base, key):
    """Per-seed differences ``method - base`` of ``key``."""
    by_seed = {r['seed']: r[key] for r in results if r['method'] == base}
    return [r[key] - by_seed[r['seed']] for r in results
            if r['method'] == method and r['seed'] in by_seed]


def _verdict(diffs: List[float]) -> str:
    """Higher / lower when the mean paired difference is more than twice
    its standard error; one seed cannot tell."""
    if len(diffs) < 2:
        return 'one seed: not resolved'
    se = np.std(diffs, ddof=1) / np.sqrt(len(diffs))
    m = float(np.mean(diffs))
    if abs(m) <= 2 * se:
        return 'within noise'
    return 'higher' if m > 0 else 'lower'


def _signed(values: List[float]) -> str:
    if not values:
        return 'n/a'
    if len(values) == 1:
        return f'{values[0]:+.1f}'
    return f'{np.mean(values):+.1f} ± {np.std(values, ddof=1):.1f}'


def _erank(runs) -> float:
    from dbot_mm.analysis import effective_rank
    return float(np.mean([effective_rank(r['singular_values'])
                          for r in runs]))


def report_parts(path: str = TEMPLATE) -> Dict[str, string.Template]:
    """The blocks of the report template, by the name of their ``<!-- part:
    NAME -->`` line; each ends with one newline."""
    with open(path) as f:
        chunks = re.split(r'^<!-- part: (\w+) -->\n', f.read(),
                          flags=re.M)[1:]
    return {name: string.Template(body.rstrip('\n') + '\n')
            for name, body in zip(chunks[::2], chunks[1::2])}


def _quality_rows(p, results, inits) -> List[str]:
    rows = []
    if inits:
        rows.append(
            f'| random init | – | {mean_std([r["knn"] for r in inits])} | '
            f'{mean_std([r["linear"] for r in inits])} | – | '
            f'{_erank(inits):.1f} | – |')
    for m in p['methods']:
        runs = [r for r in results if r['method'] == m]
        if not runs:
            continue
        stages = runs[0]['stages']
        per_stage = [
            mean_std([v for r in runs for e, v in r['knn_curve'] if e == b])
            for b in stages[1:]
        ]
        rows.append(
            f'| {METHODS[m][0]} | {len(stages) - 1} '
            f'({", ".join(str(y - x) for x, y in zip(stages, stages[1:]))})'
            f' | {mean_std([r["knn"] for r in runs])} | '
            f'{mean_std([r["linear"] for r in runs])} | '
            f'{" → ".join(per_stage)} | '
            f'{_erank(runs):.1f} | '
            f'{np.mean([r["train_seconds"] for r in runs]) / 60:.1f} |')
    return rows


def _paired_rows(results, base, others) -> List[str]:
    rows = []
    for m in others:
        dk = _paired(results, m, base, 'knn')
        dl = _paired(results, m, base, 'linear')
        rows.append(f'| {METHODS[m][0]} | {_signed(dk)} | '
                    f'{_signed(dl)} | {_verdict(dl)} |')
    return rows


def _transfer_rows(tasks, best) -> List[str]:
    fmt = lambda v: 'n/a' if v is None else f'{v:.1f}'  # noqa: E731
    rows = []
    for name in ('pretrained', 'random_init'):
        d = tasks.get(('det', name), {})
        s = tasks.get(('seg', name), {})
        label = best if name == 'pretrained' else 'random init'
        rows.append(f'| {label} | {fmt(d.get("coco/bbox_mAP"))} | '
                    f'{fmt(d.get("coco/segm_mAP"))} | '
                    f'{fmt(s.get("mIoU"))} |')
    return rows


def _official_rows(results, inits) -> List[str]:
    """Our kNN at the points the official code was measured at."""
    r = results[0] if results else None
    ours = {'random init': inits[0]['knn'] if inits else None}
    if r:
        for i, b in enumerate(r['stages'][1:], 1):
            ours[f'after stage {i}'] = next(
                (v for e, v in r['knn_curve'] if e == b), None)
    return [f'| {k} | {v:.1f} | '
            f'{"n/a" if ours.get(k) is None else f"{ours[k]:.1f}"} |'
            for k, v in REFERENCE_KNN.items()]


def write_report(path, p, preset, results, inits, tasks, best, timings,
                 machine, fig_dir, command):
    """Fill templates/mini_study.md with the tables; the blocks other
    scripts wrote into the report (:func:`kept_sections`) stay at the end."""
    parts = report_parts()

    def section(name, **values):  # a block and the blank line after it
        return parts[name].substitute(**values) + '\n'

    rel = lambda f: osp.relpath(osp.join(fig_dir, f),  # noqa: E731
                                osp.dirname(osp.abspath(path)))
    a = p['arch']
    base = 'random_teacher'
    others = [m for m in p['methods'] if m != base]
    paired = section('paired', rows='\n'.join(
        _paired_rows(results, base, others))) \
        if base in p['methods'] and others else ''
    transfer = section(
        'transfer', best=best, num_train=p['mosaic']['num_train'],
        num_val=p['mosaic']['num_val'], det_epochs=p['det']['epochs'],
        seg_iters=p['seg']['iters'],
        rows='\n'.join(_transfer_rows(tasks, best))) if tasks else ''
    official = section('official_reference', rows='\n'.join(
        _official_rows(results, inits))) if preset == 'reference' \
        else section('official_code')
    groups = [('random init', inits)] + [
        (METHODS[m][0], [r for r in results if r['method'] == m])
        for m in p['methods']
    ]
    attention_rows = [
        f'| {label} | ' + ' | '.join(
            f'{d:.1f}' for d in np.mean(
                [np.array(r['attention_distance']) for r in runs],
                0).mean(1)) + ' |'
        for label, runs in groups if runs
    ]
    summary = osp.join(fig_dir, 'summary.md')
    if osp.isfile(summary):  # the hand-written reading, kept across runs
        with open(summary) as f:
            summary = f.read().rstrip('\n') + '\n\n'
    else:
        summary = ''
    text = parts['report'].substitute(
        date=datetime.date.today().isoformat(), preset=preset, **a,
        summary=summary,
        decoder_dims=p['decoder']['dims'],
        decoder_depth=p['decoder']['depth'], num_train=p['num_train'],
        num_val=p['num_val'], epochs=p['epochs'],
        batch_size=p['batch_size'],
        lr=f'{p["blr"] * p["batch_size"] / 256:g}', warmup=p['warmup'],
        seeds=p['seeds'], knn_bank=p['knn_monitor'][0],
        knn_queries=p['knn_monitor'][1],
        quality_rows='\n'.join(_quality_rows(p, results, inits)),
        knn_curve_png=rel('knn_curve.png'), paired=paired, transfer=transfer,
        analysis_images=p['analysis_images'],
        attention_distance_png=rel('attention_distance.png'),
        singular_values_png=rel('singular_values.png'),
        block_columns=' | '.join(f'block {i + 1}'
                                 for i in range(a['num_layers'])),
        block_separators='---|' * a['num_layers'],
        attention_rows='\n'.join(attention_rows), official=official,
        command=command, **machine, wall_times=', '.join(
            f'{k} {v / 60:.1f} min' for k, v in timings.items()))
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    kept = kept_sections(path)
    with open(path, 'w') as f:
        f.write(text + kept)


def kept_sections(path) -> str:
    """Sections other studies write into the report (between ``<!-- begin:
    NAME -->`` and ``<!-- end: NAME -->``, e.g. ``demo_study.py``'s early-dip
    study): carried over when this report is rewritten."""
    if not osp.isfile(path):
        return ''
    with open(path) as f:
        text = f.read()
    blocks = re.findall(r'\n<!-- begin: (\S+) -->.*?<!-- end: \1 -->\n', text,
                        flags=re.S)
    return ''.join(
        re.search(rf'\n<!-- begin: {re.escape(b)} -->.*?<!-- end: '
                  rf'{re.escape(b)} -->\n', text, flags=re.S).group(0)
        for b in blocks)


# --------------------------------------------------------------------- main
def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--preset', choices=list(PRESETS), default='full')
    ap.add_argument('--quick', action='store_true',
                    help='same as --preset quick')
    ap.add_argument('--seeds', type=int, nargs='+', default=None)
    ap.add_argument('--methods', nargs='+', choices=list(METHODS),
                    default=None)
    ap.add_argument('--no-transfer', action='store_true',
                    help='skip the det / seg fine-tuning')
    ap.add_argument('--data-root', default=None,
                    help='default data/mini_study/<preset>')
    ap.add_argument('--work-dir', default=None,
                    help='default work_dirs/mini_study/<preset>')
    ap.add_argument('--report', default=None,
                    help='markdown output (default docs/mini_study.md for '
                    'the full preset, <work dir>/mini_study.md otherwise)')
    ap.add_argument('--threads', type=int, default=None,
                    help='torch threads (default: torch\'s choice)')
    ap.add_argument('--force', action='store_true',
                    help='rerun finished runs instead of reusing results')
    ap.add_argument('--verbose', action='store_true',
                    help='mmengine INFO logs on the console')
    args = ap.parse_args(argv)
    if args.quick:
        args.preset = 'quick'
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    p = copy.deepcopy(PRESETS[args.preset])
    if args.seeds:
        p['seeds'] = args.seeds
    if args.methods:
        p['methods'] = args.methods
    data_root = args.data_root or osp.join('data', 'mini_study', args.preset)
    work_root = args.work_dir or osp.join('work_dirs', 'mini_study',
                                          args.preset)
    report = args.report or (
        osp.join(REPO, 'docs', 'mini_study.md') if args.preset == 'full'
        else osp.join(work_root, 'mini_study.md'))
    fig_dir = osp.join(osp.dirname(osp.abspath(report)), 'mini_study') \
        if args.preset == 'full' and not args.report \
        else osp.join(work_root, 'figures')
    command = 'python tools/reproduce/mini_study.py ' + ' '.join(
        sys.argv[1:] if argv is None else argv)

    # Quiet console: mmengine's INFO (e.g. the per-parameter init dump)
    # goes nowhere unless --verbose.
    from mmengine.logging import MMLogger
    MMLogger.get_instance(f'mini_study_{time.time_ns()}',
                          log_level='INFO' if args.verbose else 'WARNING')
    import dbot_mm  # noqa: F401  (registers everything)
    machine = machine_info()
    log(f'preset {args.preset}: seeds {p["seeds"]}, methods {p["methods"]}'
        f'; {machine["cpu"]}, {machine["cores"]} cores, load '
        f'{machine["load_at_start"]}')
    timings = {}
    t0 = time.time()
    paths = prepare_data(p, data_root)
    data = EvalData(paths['fashion_mnist'], [55.9] * 3, [84.9] * 3)
    timings['data'] = time.time() - t0

    t0 = time.time()
    inits = [random_init(p, s, data, paths, work_root, args)
             for s in p['seeds']]
    results = []
    for seed in p['seeds']:
        for method in p['methods']:
            results.append(run_pretrain(p, method, seed, data, paths,
                                        work_root, args))
    timings['pretraining + evaluation'] = time.time() - t0

    best, tasks = None, {}
    means = {m: np.mean([r['linear'] for r in results if r['method'] == m])
             for m in p['methods']}
    best_method = max(means, key=means.get)
    best = METHODS[best_method][0]
    if p.get('det') and not args.no_transfer:
        t0 = time.time()
        ckpt = next(r['checkpoint'] for r in results
                    if r['method'] == best_method
                    and r['seed'] == p['seeds'][0])
        for task in ('det', 'seg'):
            for name, c in (('pretrained', ckpt), ('random_init', None)):
                tasks[(task, name)] = run_task(task, p, name, c, paths,
                                               work_root, args)
        timings['det + seg'] = time.time() - t0

    make_plots(results, inits, p, fig_dir)
    with open(osp.join(work_root, 'summary.json'), 'w') as f:
        json.dump(dict(preset=args.preset, settings=p, machine=machine,
                       timings=timings, best=best_method,
                       tasks={f'{k[0]}_{k[1]}': v for k, v in tasks.items()},
                       results=[{k: v for k, v in r.items()
                                 if k not in ('attention_distance',
                                              'singular_values')}
                                for r in inits + results]), f, indent=1)
    write_report(report, p, args.preset, results, inits, tasks, best,
                 timings, machine, fig_dir, command)
    log(f'report: {report}; figures: {fig_dir}; total '
        f'{sum(timings.values()) / 60:.1f} min')
    return dict(results=results, inits=inits, tasks=tasks, report=report,
                fig_dir=fig_dir)


if __name__ == '__main__':
    main()
