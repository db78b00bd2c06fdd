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
"""
import argparse
import copy
import datetime
import json
import logging
import os
import os.path as osp
import platform
import re
import subprocess
import sys
import time
from typing import Dict, List, Optional

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)

import numpy as np  # noqa: E402
import torch  # noqa: E402

CLASSES = ('T-shirt_top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal',
           'Shirt', 'Sneaker', 'Bag', 'Ankle_boot')
CONFIG_DIR = osp.join(REPO, 'configs', 'reproduce')
PRETRAIN_CONFIGS = dict(
    dbot=osp.join(CONFIG_DIR, 'mini-study_dbot_fashion-mnist.py'),
    mae=osp.join(CONFIG_DIR, 'mini-study_mae_fashion-mnist.py'))
TASK_CONFIGS = dict(
    det=osp.join(CONFIG_DIR, 'mini-study_cascade-mask-rcnn_mosaic.py'),
    seg=osp.join(CONFIG_DIR, 'mini-study_upernet_mosaic.py'))

# name: (label, pretrain config, number of stages)
METHODS = {
    'mae': ('MAE (pixel target)', 'mae', 1),
    'random_teacher': ('random teacher, 1 stage', 'dbot', 1),
    'dbot_2stage': ('dBOT, 2 stages', 'dbot', 2),
    'dbot_3stage': ('dBOT, 3 stages', 'dbot', 3),
}

_ARCH_S = dict(embed_dims=128, num_layers=6, num_heads=4,
               feedforward_channels=512)
PRESETS = {
    # ~70 min on 2 idle cores (sizing in docs/mini_study.md)
    'full': dict(
        seeds=[0, 1, 2],
        methods=list(METHODS),
        num_train=4000, num_val=4000,
        arch=_ARCH_S, decoder=dict(dims=96, depth=2, heads=3),
        epochs=12, warmup=1, batch_size=128, blr=1e-3,
        knn_monitor=(1000, 500), knn_interval=2,
        analysis_images=256,
        mosaic=dict(num_train=600, num_val=200, canvas=64,
                    objects=(1, 3), scale=(0.75, 1.25)),
        det=dict(epochs=4, batch_size=8, lr=4e-4, warmup=50),
        seg=dict(iters=400, batch_size=8, lr=4e-4, warmup=50)),
    # a couple of minutes: every step once, on toy sizes
    'quick': dict(
        seeds=[0],
        methods=list(METHODS),
        num_train=192, num_val=128,
        arch=dict(embed_dims=64, num_layers=4, num_heads=2,
                  feedforward_channels=128),
        decoder=dict(dims=32, depth=1, heads=2),
        epochs=6, warmup=1, batch_size=64, blr=1e-3,
        knn_monitor=(192, 128), knn_interval=2,
        analysis_images=32,
        mosaic=dict(num_train=16, num_val=8, canvas=64,
                    objects=(1, 3), scale=(0.75, 1.25)),
        det=dict(epochs=1, batch_size=8, lr=4e-4, warmup=2),
        seg=dict(iters=8, batch_size=8, lr=4e-4, warmup=2)),
    # the recipe the official code was measured at: 192 x 6 ViT, decoder
    # 128 x 4, 10k images, batch 256, 10 epochs per stage, fp32; kNN on the
    # 10k test images after each stage. dBOT only.
    'reference': dict(
        seeds=[0],
        methods=['dbot_2stage'],
        num_train=10000, num_val=10000,
        arch=dict(embed_dims=192, num_layers=6, num_heads=3,
                  feedforward_channels=768),
        decoder=dict(dims=128, depth=4, heads=4),
        epochs=20, warmup=1, batch_size=256, blr=1e-3,
        knn_monitor=(10000, 10000), knn_interval=0,
        analysis_images=256,
        mosaic=None, det=None, seg=None),
}
REFERENCE_KNN = {'random init': 62.3, 'after stage 1': 72.5,
                 'after stage 2': 73.7}


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
    from mmengine.config import Config

    from dbot_mm.engine.schedules import stage_lr_schedulers
    _, kind, num_stages = METHODS[method]
    cfg = Config.fromfile(PRETRAIN_CONFIGS[kind])
    arch, dec = copy.deepcopy(p['arch']), p['decoder']
    epochs = p['epochs']
    stages = stage_bounds(epochs, num_stages)

    cfg.model.backbone.arch = arch
    cfg.model.neck.update(embed_dim=arch['embed_dims'],
                          decoder_embed_dim=dec['dims'],
                          decoder_depth=dec['depth'],
                          decoder_num_heads=dec['heads'])
    hooks = [h for h in cfg.custom_hooks
             if h['type'] != 'StageBootstrapHook']
    if kind == 'dbot':
        depths = [arch['num_layers']] * num_stages
        cfg.model.teacher.update(arch=copy.deepcopy(arch), depth=depths[0])
        hooks.insert(0, dict(type='StageBootstrapHook', stages=stages,
                             teacher_depths=depths))
    cfg.param_scheduler = stage_lr_schedulers(stages,
                                              warmup_epochs=p['warmup'])
    cfg.train_cfg.max_epochs = epochs
    for h in hooks:
        if h['type'] == 'KNNMonitorHook':
            h['eval_at_start'] = True  # every curve starts at random init
            h['interval'] = p['knn_interval']
            for loader, size in zip(
                    (h['train_dataloader'], h['val_dataloader']),
                    p['knn_monitor']):
                loader['dataset']['data_root'] = data_root
                loader['dataset']['indices'] = size
    cfg.custom_hooks = hooks
    cfg.train_dataloader.dataset.data_root = data_root
    cfg.train_dataloader.batch_size = p['batch_size']
    cfg.optim_wrapper.optimizer.lr = p['blr'] * p['batch_size'] / 256
    cfg.default_hooks.checkpoint.update(interval=epochs, max_keep_ckpts=1)
    cfg.default_hooks.logger.interval = 50
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


def random_init(p, seed, data, paths, work_root, args):
    """Scores of the untrained student (dBOT's initialisation)."""
    from mmengine.registry import init_default_scope
    from mmengine.runner import set_random_seed
    from mmpretrain.registry import MODELS
    result_file = osp.join(work_root, f'random_init_seed{seed}.json')
    if osp.isfile(result_file) and not args.force:
        with open(result_file) as f:
            result = json.load(f)
        if result.get('preset_key') == preset_key(p):
            return result
    cfg, _ = pretrain_cfg(p, 'random_teacher', seed, paths['fashion_mnist'],
                          work_root, args.verbose)
    init_default_scope('mmpretrain')
    set_random_seed(seed)
    model = MODELS.build(cfg.model)
    model.init_weights()
    scores = score(model.backbone, data)
    props = analyse(model.backbone, data.val[:p['analysis_images']])
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
    from mmengine.config import Config
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
        for loader in (cfg.train_dataloader, cfg.val_dataloader,
                       cfg.test_dataloader):
            loader.dataset.data_root = root
        for ev in (cfg.val_evaluator, cfg.test_evaluator):
            ev.ann_file = root + 'annotations/instances_val2017.json'
        e = t['epochs']
        cfg.train_cfg.update(max_epochs=e, val_interval=e)
        cfg.param_scheduler = [
            dict(type='LinearLR', start_factor=0.001, by_epoch=False,
                 begin=0, end=t['warmup']),
            dict(type='MultiStepLR', begin=0, end=e, by_epoch=True,
                 milestones=[max(1, e - 1)], gamma=0.1)
        ]
        cfg.default_hooks.checkpoint.update(interval=e)
    else:
        root = osp.join(paths['mosaic'], 'ade')
        cfg.model.decode_head.in_channels = [width] * 4
        cfg.model.auxiliary_head.in_channels = width
        for loader in (cfg.train_dataloader, cfg.val_dataloader,
                       cfg.test_dataloader):
            loader.dataset.data_root = root
        it, warm = t['iters'], t['warmup']
        cfg.train_cfg.update(max_iters=it, val_interval=it)
        cfg.param_scheduler = [
            dict(type='LinearLR', start_factor=1e-6, by_epoch=False,
                 begin=0, end=warm),
            dict(type='PolyLR', eta_min=0.0, power=1.0, begin=warm, end=it,
                 by_epoch=False)
        ]
        cfg.default_hooks.checkpoint.update(interval=it)
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


STATIC_METHODS = """\
What is compared (one small ViT, identical data, optimizer, epochs and
seeds for every row; only the target and the number of stages change):

| row | target the student regresses | stages |
|---|---|---|
| random init | – (the untrained encoder) | – |
| MAE (pixel target) | normalised pixels of the masked patches (mmpretrain `MAE`) | 1 |
| random teacher, 1 stage | tokens of the frozen, randomly initialised network (dBOT's first stage, never bootstrapped) | 1 |
| dBOT, 2 stages | as above, then the teacher is replaced by the trained student and the student restarts from a fresh init (`StageBootstrapHook`) | 2 |
| dBOT, 3 stages | the same with two bootstraps | 3 |

The paper's claims that this checks at toy scale: (1) the choice of target
matters little, a random teacher is enough ("different targets tend to
derive similarly behaved models"); (2) bootstrapping the teacher over
stages improves the representation (2 stages for classification, 3 for
detection and segmentation); (3) the bootstrapped encoder transfers to
detection and segmentation.
"""

SIZING = """\
## Sizing

The budget is the whole study in 60-90 minutes on 2 CPU cores. Measured on
this machine (AMD EPYC, 2 cores, fp32, quiet periods of a shared machine),
per training step:

| part | setting | measured | per run |
|---|---|---|---|
| dBOT pretraining (student + decoder + full-image teacher) | ViT 128 x 6, decoder 96 x 2, batch 128 | ~0.6 s / step (~210 img/s) | 12 epochs x 31 steps: ~4 min |
| MAE pretraining | same encoder and decoder | ~0.36 s / step (~350 img/s) | ~2.5 min |
| kNN monitor | 1000 bank / 500 queries, every 2 epochs and at stage ends | ~3 s / evaluation | ~0.4 min |
| final kNN + linear probe + analysis | 4000 + 4000 images | | ~0.3 min |
| Cascade Mask R-CNN | 64 px, batch 8 | ~0.8 s / step; eval ~0.3 s / image | 4 epochs x 75 steps + 200 val images: ~5 min |
| UperNet | 64 px, batch 8 | ~0.37 s / step | 400 steps: ~2.5 min |

So 12 pretraining runs (4 methods x 3 seeds) take about 50 minutes with
their evaluations, the 4 transfer runs about 15, data preparation one:
about 70 minutes on an idle machine; on a machine shared with other jobs
everything stretches by the load factor. What was cut to fit, against the
official-code reference (192 x 6 ViT, decoder 128 x 4, 10k images,
batch 256, 10 epochs per stage): the encoder is 128 wide with 4 heads
(about 2.5x cheaper per image), the decoder 96 x 2, 4000 train images, 12
epochs in total for every method (the 3-stage run gets 4 per stage), one
warmup epoch per stage. Precision is fp32: mmengine's `AmpOptimWrapper`
refuses CPU-only machines, and a check of bf16 autocast on this CPU
(avx512_bf16, no AMX) showed no consistent speed-up for these small
matrices. The learning rate follows
the official rule, lr = blr x batch / 256 with MAE's default blr 1e-3; it
was not tuned. Detection and segmentation use the configs of `configs/det`
and `configs/seg` (inherited, shrunk: 64-channel FPN, 32-channel RoI heads,
adapter scales 2 / 1 / 0.5 / 0.25 for the patch-4 grid, BN, no AMP; see
`configs/reproduce/`). Checked before fixing these budgets: from random
initialisation, 3 epochs of Cascade Mask R-CNN on the 600 training scenes
reach 29.9 bbox / 35.5 segm mAP and 200 UperNet steps 20.6 mIoU, so the
transfer runs learn enough to compare encoders. With other jobs on the
same 2 cores every step was 2-10x slower than in the table (OpenMP
threads of two processes fight for the cores); `--threads 1` helps there.
"""

ANALYSIS_TOOLS = """\
## The property tools

The study's property plots come from `dbot_mm.analysis`, which the two
command-line tools wrap for any checkpoint: a dbot_mm training checkpoint (the
student `backbone.*` or, with `--component teacher`, the teacher, cut to the blocks
it runs), an mmpretrain MAE checkpoint, a published backbone
(`tools/model_converters/publish_model.py`) or a converted official one.

```bash
python tools/analysis/attention_distance.py CONFIG_OR_ARCH CHECKPOINT \\
    --data-root data/fashion_mnist --ann-file meta/val.txt --data-prefix val \\
    --num-images 256 --out work_dirs/analysis      # or --images DIR
python tools/analysis/singular_values.py CONFIG_OR_ARCH CHECKPOINT \\
    --images DIR --layers all --out work_dirs/analysis
```

`CONFIG_OR_ARCH` is a config (arch, patch and image size from
`model.<component>`, input normalisation from its data preprocessor), an
mmpretrain arch name, or `auto` (widths and depth from the tensors; pass
`--num-heads` for non-standard widths). Each tool writes a PNG, a CSV and a
JSON summary.

* Mean attention distance: for every query patch, the attention-weighted
  mean Euclidean distance in pixels between patch centres, averaged over
  query patches and images, per block and head. The cls token is neither
  query nor key; each query's patch weights are renormalised to sum to one
  (`--no-renormalize` keeps the raw weights, as the public ViT notebooks
  do). Attention maps are recomputed from each block's `qkv` layer, since
  mmpretrain's attention runs fused SDPA.
* Singular values: block outputs (before the final LayerNorm) of every
  patch token of the images, stacked, centred per channel; singular values
  divided by the largest, log scale; the JSON adds the effective rank.
"""


REFERENCE = """\
## The official code at the reference recipe

The official code (`models_mae.py`), measured on 2 cores: 192-wide
6-deep ViT, patch 4, 32 px, decoder 128 x 4, 10k images, batch 256, 10
epochs per stage, fp32, about 20 minutes per stage; kNN top-1 (k = 20, mean
patch token, 10k test images) 62.3 % at random init, 72.5 % after stage 1,
73.7 % after stage 2. The official side is rerun by
`python tools/reproduce/official_dbot.py --official PATH --official-timm DIR
--data-root DIR --dims 192 --depth 6 --heads 3 --dec-dims 128 --dec-depth 4
--batch 256 --blr 1e-3 --warmup 1 --stage-epochs 0 10 20 --knn-bank 10000
--knn-every 10 --out official_reference.json` (the untouched official code,
this repository's data pipeline and kNN probe; about 40 minutes idle).
The same recipe through dbot_mm is
`python tools/reproduce/mini_study.py --preset reference` (dBOT only, one
seed, about 45 minutes idle; not part of the study above; lr 1e-3 with one
warmup epoch per stage is our assumption; the official measurement does not state it). It
writes its own report with the comparison into
`work_dirs/mini_study/reference/`.
"""


def _erank(runs) -> float:
    from dbot_mm.analysis import effective_rank
    return float(np.mean([effective_rank(r['singular_values'])
                          for r in runs]))


def write_report(path, p, preset, results, inits, tasks, best, timings,
                 machine, fig_dir, command):
    rel = lambda f: osp.relpath(osp.join(fig_dir, f),  # noqa: E731
                                osp.dirname(osp.abspath(path)))
    a = p['arch']
    lines = [
        '# Mini study: dBOT on Fashion-MNIST, CPU',
        '',
        'Generated by `tools/reproduce/mini_study.py` on '
        f'{datetime.date.today().isoformat()} (preset `{preset}`); the '
        'command, the machine and the wall times are at the end.',
        '',
        STATIC_METHODS,
        f'Encoder: ViT {a["embed_dims"]} wide, {a["num_layers"]} blocks, '
        f'{a["num_heads"]} heads, patch 4 on 32 px (Fashion-MNIST padded); '
        f'decoder {p["decoder"]["dims"]} x {p["decoder"]["depth"]}. '
        f'{p["num_train"]} train images (pretraining set, kNN bank and probe '
        f'training set), {p["num_val"]} test images; {p["epochs"]} epochs '
        f'in total for every method, batch {p["batch_size"]}, AdamW lr '
        f'{p["blr"] * p["batch_size"] / 256:g}, {p["warmup"]} warmup '
        f'epoch(s) per stage, fp32; seeds {p["seeds"]}.',
        '',
        '## Representation quality',
        '',
        'kNN: cosine, k = 20, T = 0.07 on the mean patch token '
        '(`knn_classify`); linear: logistic regression on the same frozen '
        'features (standardised, L-BFGS, fixed L2; `dbot_mm.analysis.'
        'linear_probe`). Mean ± sample std over seeds. "kNN monitor": '
        f'`KNNMonitorHook` ({p["knn_monitor"][0]} bank / '
        f'{p["knn_monitor"][1]} queries) at the end of each stage. '
        '"eff. rank": exp(entropy) of the normalised singular values of '
        'the last block\'s patch tokens.',
        '',
        '| method | stages (epochs) | kNN top-1 | linear top-1 | '
        'kNN monitor after each stage | eff. rank | pretrain min/run |',
        '|---|---|---|---|---|---|---|',
    ]
    if inits:
        lines.append(
            f'| random init | – | {mean_std([r["knn"] for r in inits])} | '
            f'{mean_std([r["linear"] for r in inits])} | – | '
            f'{_erank(inits):.1f} | – |')
    for m in p['methods']:
        runs = [r for r in results if r['method'] == m]
        if not runs:
            continue
        stages = runs[0]['stages']
        per_stage = []
        for b in stages[1:]:
            vals = [v for r in runs for e, v in r['knn_curve'] if e == b]
            per_stage.append(mean_std(vals))
        lines.append(
            f'| {METHODS[m][0]} | {len(stages) - 1} '
            f'({", ".join(str(y - x) for x, y in zip(stages, stages[1:]))})'
            f' | {mean_std([r["knn"] for r in runs])} | '
            f'{mean_std([r["linear"] for r in runs])} | '
            f'{" → ".join(per_stage)} | '
            f'{_erank(runs):.1f} | '
            f'{np.mean([r["train_seconds"] for r in runs]) / 60:.1f} |')
    lines += ['', f'![kNN curve]({rel("knn_curve.png")})', '']

    base = 'random_teacher'
    others = [m for m in p['methods'] if m != base]
    if base in p['methods'] and others:
        lines += [
            '### Paired by seed, against "random teacher, 1 stage"',
            '',
            '"higher" / "lower": the mean difference is more than twice its '
            'standard error over seeds, otherwise "within noise".',
            '',
            '| method | Δ kNN | Δ linear | verdict (linear) |',
            '|---|---|---|---|',
        ]
        for m in others:
            dk = _paired(results, m, base, 'knn')
            dl = _paired(results, m, base, 'linear')
            lines.append(f'| {METHODS[m][0]} | {_signed(dk)} | '
                         f'{_signed(dl)} | {_verdict(dl)} |')
        lines.append('')
    if tasks:
        lines += [
            '## Transfer to the mosaic sets',
            '',
            f'Best pretraining method by mean linear top-1: **{best}** '
            '(its seed-0 encoder), against the same encoder at random '
            'initialisation. Cascade Mask R-CNN (mmdet CocoMetric, '
            'pycocotools) and UperNet (mmseg IoUMetric) on 64 px canvases; '
            f'{p["mosaic"]["num_train"]} train / {p["mosaic"]["num_val"]} '
            f'val scenes; det {p["det"]["epochs"]} epochs, seg '
            f'{p["seg"]["iters"]} iterations, one seed. The scenes are '
            'synthetic (random layouts of real Fashion-MNIST items): these '
            'numbers say nothing about COCO or ADE20K.',
            '',
            '| encoder | bbox mAP | segm mAP | mIoU |',
            '|---|---|---|---|',
        ]
        for name in ('pretrained', 'random_init'):
            d = tasks.get(('det', name), {})
            s = tasks.get(('seg', name), {})
            label = best if name == 'pretrained' else 'random init'
            fmt = lambda v: 'n/a' if v is None else f'{v:.1f}'  # noqa: E731
            lines.append(f'| {label} | {fmt(d.get("coco/bbox_mAP"))} | '
                         f'{fmt(d.get("coco/segm_mAP"))} | '
                         f'{fmt(s.get("mIoU"))} |')
        lines.append('')
    lines += [
        '## Properties',
        '',
        'Mean attention distance per block and head (cls token left out as '
        'query and key, patch weights renormalised; dashed: uniform '
        'attention over the 8 x 8 grid, '
        f'{p["analysis_images"]} test images) and the normalised singular '
        'values of the last block\'s patch tokens, averaged over seeds. '
        'CSVs next to the PNGs.',
        '',
        f'![attention distance]({rel("attention_distance.png")})',
        '',
        f'![singular values]({rel("singular_values.png")})',
        '',
        '| method | ' + ' | '.join(f'block {i + 1}'
                                   for i in range(a['num_layers'])) +
        ' (mean over heads, px) |',
        '|---|' + '---|' * a['num_layers'],
    ]
    groups = [('random init', inits)] + [
        (METHODS[m][0], [r for r in results if r['method'] == m])
        for m in p['methods']
    ]
    for label, runs in groups:
        if runs:
            dist = np.mean([np.array(r['attention_distance']) for r in runs],
                           0).mean(1)
            lines.append(f'| {label} | ' +
                         ' | '.join(f'{d:.1f}' for d in dist) + ' |')
    lines.append('')
    if preset == 'reference':
        lines += [
            '## Against the official code at the same recipe',
            '',
            '| kNN top-1 | official code | dbot_mm |',
            '|---|---|---|',
        ]
        r = results[0] if results else None
        ours = {'random init': inits[0]['knn'] if inits else None}
        if r:
            for i, b in enumerate(r['stages'][1:], 1):
                ours[f'after stage {i}'] = next(
                    (v for e, v in r['knn_curve'] if e == b), None)
        for k, v in REFERENCE_KNN.items():
            o = ours.get(k)
            lines.append(f'| {k} | {v:.1f} | '
                         f'{"n/a" if o is None else f"{o:.1f}"} |')
        lines.append('')
    else:
        lines += [REFERENCE]
    lines += [
        SIZING,
        ANALYSIS_TOOLS,
        '## How it was run',
        '',
        '```bash',
        'apt-get install dataset-fashion-mnist   # once, see docs/datasets.md',
        command,
        '```',
        '',
        f'Machine: {machine["cpu"]}, {machine["cores"]} cores, torch '
        f'{machine["torch"]} ({machine["torch_threads"]} threads), Python '
        f'{machine["python"]}; load average at start '
        f'{machine["load_at_start"]} (other jobs running on the same cores '
        'slow every number in "min/run" down). Wall time: ' + ', '.join(
            f'{k} {v / 60:.1f} min' for k, v in timings.items()) + '.',
        '',
        'Every run keeps its logs, checkpoint and `result.json` under the '
        'work dir; rerunning the command reuses finished runs (`--force` '
        'redoes them).',
        '',
    ]
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    kept = kept_sections(path)
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + kept)


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
