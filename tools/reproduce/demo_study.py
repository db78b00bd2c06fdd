"""How the demo recipe was chosen, what it gives over seeds, and the early dip.

Every run starts from ``configs/pretrain/dbot_demo_fashion-mnist.py`` and
changes only the recipe knobs of :data:`KNOBS` (model size, decoder, batch,
lr, warmup, epochs per stage, mask ratio, data size, precision); the kNN
numbers are the ones the demo's own ``KNNMonitorHook`` logs (mean patch
token, k = 20, T = 0.07; a 2,000-image Fashion-MNIST bank against the 2,000
first test images, and the scikit-learn digits, never trained on: 1,000-image
bank, 797 queries).  Finished runs are cached as JSON under the work dir, so
a study can be completed across sittings; ``report`` rebuilds the docs from
the cache.

    python tools/reproduce/demo_study.py sweep            # recipe sweep, seed 0
    python tools/reproduce/demo_study.py seeds            # shipped demo, seeds 0 1 2
    python tools/reproduce/demo_study.py dip [--official /tmp/dbot_official \\
        --official-timm /tmp/timm0412]                    # the early kNN dip
    python tools/reproduce/demo_study.py report           # docs/demo_study.md,
                                                          # docs/mini_study/dip.md
"""
import argparse
import copy
import json
import os
import os.path as osp
import platform
import re
import subprocess
import sys
import time
from itertools import accumulate

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO = osp.join(REPO, 'configs', 'pretrain', 'dbot_demo_fashion-mnist.py')
DATA = osp.join(REPO, 'data', 'demo_study')
WORK = osp.join(REPO, 'work_dirs', 'demo_study')

# The recipe a run is described by; None: as the shipped demo config.
KNOBS = ('dims', 'depth', 'heads', 'dec_dims', 'dec_depth', 'batch', 'blr',
         'warmup', 'stage_epochs', 'mask_ratio', 'num_train', 'amp',
         'norm_target', 'knn_every_iters')

BASE = dict(dims=128, depth=4, heads=4, dec_dims=96, dec_depth=2, batch=128,
            blr=1.5e-3, warmup=1, stage_epochs=[3, 3, 3], mask_ratio=0.75,
            num_train=2000, amp=True, norm_target=True, knn_every_iters=None)


def recipe(**changes):
    r = copy.deepcopy(BASE)
    unknown = set(changes) - set(KNOBS)
    if unknown:
        raise KeyError(f'unknown recipe knobs {sorted(unknown)}')
    r.update(changes)
    return r


# name -> (what it tests, recipe). Seed 0 each; the winner is re-run over
# seeds by `seeds` from the shipped config itself.
SWEEP = {
    '3x3ep-2k-bs64': ("the previous demo's data and batch",
                      recipe(batch=64, stage_epochs=[3, 3, 3])),
    '3x3ep-10k': ('5x the data, batch 128', recipe(
        num_train=10000, stage_epochs=[3, 3, 3])),
    '3x5ep-10k': ('longer stages', recipe(
        num_train=10000, stage_epochs=[5, 5, 5])),
}

# The dip: one stage, kNN every 20 iterations, one knob at a time.
_DIP = dict(num_train=10000, stage_epochs=[4], knn_every_iters=39)
DIP = {
    'baseline': ('the demo recipe (warmup 1 epoch, blr 1.5e-3, decoder 2)',
                 recipe(**_DIP)),
    'warmup-3': ('warmup 3 epochs', recipe(**_DIP, warmup=3)),
    'lr-x0.3': ('blr 5e-4', recipe(**_DIP, blr=5e-4)),
    'no-target-norm': ('raw teacher tokens (no per-token normalisation)',
                       recipe(**_DIP, norm_target=False)),
    'decoder-4': ('decoder depth 4', recipe(**_DIP, dec_depth=4)),
    'fp32': ('fp32 instead of bf16 autocast', recipe(**_DIP, amp=False)),
}


# ------------------------------------------------------------------ data
def prepare_data(num_train=10000, num_val=2000):
    from dbot_mm.datasets import convert_digits, convert_fashion_mnist
    fm = osp.join(DATA, 'fashion_mnist')
    convert_fashion_mnist(fm, num_train=num_train, num_val=num_val,
                          pad_to=32)
    digits = osp.join(DATA, 'digits')
    convert_digits(digits)
    return fm, digits


# --------------------------------------------------------------- configs
def build_cfg(r, seed, work_dir, fm_root, digits_root):
    """The demo config with recipe ``r`` applied (every knob, so a row of
    the sweep stays what it says whatever the shipped config becomes)."""
    from mmengine.config import Config

    from dbot_mm.engine.schedules import stage_lr_schedulers
    cfg = Config.fromfile(DEMO)
    stages = list(accumulate(r['stage_epochs'], initial=0))
    cfg.model.backbone.arch = dict(
        embed_dims=r['dims'], num_layers=r['depth'], num_heads=r['heads'],
        feedforward_channels=4 * r['dims'])
    cfg.model.backbone.mask_ratio = r['mask_ratio']
    cfg.model.neck.update(decoder_embed_dim=r['dec_dims'],
                          decoder_depth=r['dec_depth'])
    cfg.model.head.norm_target = r['norm_target']
    depths = [r['depth']] * len(r['stage_epochs'])
    cfg.model.teacher.depth = depths[0]
    cfg.train_dataloader.batch_size = r['batch']
    cfg.train_dataloader.dataset.data_root = fm_root
    cfg.train_dataloader.dataset.indices = r['num_train']
    cfg.optim_wrapper.optimizer.lr = r['blr'] * r['batch'] / 256
    if r['amp']:
        cfg.optim_wrapper.type = 'AutocastOptimWrapper'
        cfg.optim_wrapper.dtype = 'bfloat16'
    else:
        cfg.optim_wrapper.type = 'OptimWrapper'
        cfg.optim_wrapper.pop('dtype', None)
    cfg.param_scheduler = stage_lr_schedulers(stages,
                                              warmup_epochs=r['warmup'])
    cfg.train_cfg.max_epochs = stages[-1]
    if r['knn_every_iters']:
        # dip runs: the Fashion-MNIST monitor every half epoch; the baseline
        # also with centred features
        fm = next(h for h in cfg.custom_hooks
                  if h['type'] == 'KNNMonitorHook' and not h.get('name'))
        hooks = [fm]
        if r == DIP['baseline'][1]:
            hooks.append(dict(copy.deepcopy(fm), name='centred', centre=True))
        cfg.custom_hooks = [
            h for h in cfg.custom_hooks if h['type'] != 'KNNMonitorHook'
        ] + hooks
    for h in cfg.custom_hooks:
        if h['type'] == 'StageBootstrapHook':
            h.update(stages=stages, teacher_depths=depths)
        if h['type'] == 'KNNMonitorHook':
            digits = h.get('name') == 'digits'
            for split in ('train_dataloader', 'val_dataloader'):
                h[split]['dataset']['data_root'] = (digits_root if digits
                                                    else fm_root)
            if not digits:
                h['train_dataloader']['dataset']['indices'] = 2000
            h.pop('stages', None)  # from StageBootstrapHook
            if r['knn_every_iters']:
                h.update(by_epoch=False, interval=r['knn_every_iters'])
    cfg.default_hooks.checkpoint.update(interval=stages[1],
                                        max_keep_ckpts=-1)
    if r['knn_every_iters']:
        cfg.default_hooks.checkpoint = None
    cfg.randomness = dict(seed=seed, diff_rank_seed=False)
    cfg.work_dir = work_dir
    cfg.experiment_name = f'{osp.basename(work_dir)}_{time.time_ns()}'
    cfg.launcher = 'none'
    return cfg, stages


def cached(path, key):
    """A finished run's result, when it was made for ``key``."""
    if osp.isfile(path):
        with open(path) as f:
            res = json.load(f)
        if res.get('key') == key:
            return res
    return None


def run(name, r, seed, group, args, fm_root, digits_root):
    from mmengine.runner import Runner
    work_dir = osp.join(args.work_dir, group, f'{name}_seed{seed}')
    out = osp.join(work_dir, 'result.json')
    key = json.dumps(r, sort_keys=True)
    res = None if args.force else cached(out, key)
    if res:
        print(f'[demo_study] {group}/{name} seed {seed}: cached')
        return res
    cfg, stages = build_cfg(r, seed, work_dir, fm_root, digits_root)
    print(f'[demo_study] {group}/{name} seed {seed}: stages {stages}',
          flush=True)
    t0 = time.time()
    runner = Runner.from_cfg(cfg)
    runner.train()
    hub = runner.message_hub
    res = dict(name=name, seed=seed, recipe=r, key=key, stages=stages,
               steps_per_epoch=len(runner.train_dataloader),
               train_seconds=round(time.time() - t0, 1),
               knn=hub.get_info('knn/history', []),
               digits=hub.get_info('knn/digits/history', []),
               centred=hub.get_info('knn/centred/history', []),
               loss=hub.get_info('curves/loss', []))
    os.makedirs(work_dir, exist_ok=True)
    with open(out, 'w') as f:
        json.dump(res, f)
    print(f'[demo_study] {group}/{name} seed {seed}: kNN '
          + ' -> '.join(f'{v:.1f}' for _, v in res['knn'])
          + f' ({res["train_seconds"] / 60:.1f} min)', flush=True)
    return res


def reuse_sweep_run(r, seed, work_dir):
    """A sweep row with the shipped recipe and this seed is that seed's run
    of the shipped demo: copy it instead of training again."""
    import shutil
    dst = osp.join(work_dir, 'seeds', f'demo_seed{seed}')
    if osp.isdir(dst):
        return
    key = json.dumps(r, sort_keys=True)
    for name, res in _load(work_dir, 'sweep').items():
        if res.get('key') == key and res['seed'] == seed:
            shutil.copytree(osp.join(work_dir, 'sweep', name), dst)
            print(f'[demo_study] seeds: seed {seed} is sweep row {name}')
            return


def run_official(name, r, seed, args, fm_root):
    out_dir = osp.join(args.work_dir, 'dip', f'official-{name}_seed{seed}')
    out = osp.join(out_dir, 'result.json')
    if osp.isfile(out) and not args.force:
        print(f'[demo_study] dip/official-{name} seed {seed}: cached')
        with open(out) as f:
            return json.load(f)
    os.makedirs(out_dir, exist_ok=True)
    steps = r['num_train'] // r['batch']
    cmd = [sys.executable, osp.join(REPO, 'tools', 'reproduce',
                                    'official_dbot.py'),
           '--official', args.official, '--data-root', fm_root,
           '--num-train', str(r['num_train']), '--num-val', '2000',
           '--knn-bank', '2000',
           '--dims', str(r['dims']), '--depth', str(r['depth']),
           '--heads', str(r['heads']), '--dec-dims', str(r['dec_dims']),
           '--dec-depth', str(r['dec_depth']), '--batch', str(r['batch']),
           '--blr', str(r['blr']), '--warmup', str(r['warmup']),
           '--mask-ratio', str(r['mask_ratio']),
           '--knn-every', str(r['knn_every_iters'] / steps),
           '--stage-epochs',
           *map(str, accumulate(r['stage_epochs'], initial=0)),
           '--seed', str(seed), '--threads', str(args.threads), '--out', out]
    if args.official_timm:
        cmd += ['--official-timm', args.official_timm]
    if not r['norm_target']:
        cmd.append('--no-norm-target')
    print('[demo_study] official code:', ' '.join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    with open(out) as f:
        return json.load(f)


# ---------------------------------------------------------------- report
def _load(work_dir, group):
    root = osp.join(work_dir, group)
    res = {}
    if not osp.isdir(root):
        return res
    for d in sorted(os.listdir(root)):
        f = osp.join(root, d, 'result.json')
        if osp.isfile(f):
            with open(f) as fh:
                res[d] = json.load(fh)
    return res


def _recipe_text(r):
    stages = ' + '.join(str(e) for e in r['stage_epochs'])
    return (f"{r['dims']}x{r['depth']} ViT, dec {r['dec_dims']}x"
            f"{r['dec_depth']}, {r['num_train'] // 1000}k imgs, bs "
            f"{r['batch']}, blr {r['blr']:g}, warmup {r['warmup']}, "
            f"{stages} ep, mask {r['mask_ratio']}"
            + ('' if r['amp'] else ', fp32')
            + ('' if r['norm_target'] else ', raw target'))


def _stage_values(history, stages):
    """kNN at random init and at every stage end, in stage order."""
    at = dict((int(s), v) for s, v in history)
    return [at.get(0)] + [at.get(e) for e in stages[1:]]


def _fmt(values):
    return ' / '.join('–' if v is None else f'{v:.1f}' for v in values)


def _mean_se(xs):
    import statistics
    m = statistics.fmean(xs)
    se = statistics.stdev(xs) / len(xs) ** .5 if len(xs) > 1 else 0.
    return m, se


def write_reports(work_dir):
    """docs/demo_study.md (sweep + seeds) and docs/mini_study/dip.md."""
    sweep, seeds, dip = (_load(work_dir, g) for g in ('sweep', 'seeds', 'dip'))
    docs = osp.join(REPO, 'docs')
    lines = [
        '# The demo recipe: sweep and seeds',
        '',
        'Generated by `python tools/reproduce/demo_study.py report` from the '
        'runs cached by `demo_study.py sweep` and `demo_study.py seeds` '
        f'({_machine()}). kNN top-1 (%) of the student encoder as the '
        "demo's `KNNMonitorHook` logs it: mean patch token, k = 20, T = 0.07; "
        'Fashion-MNIST: 2,000 train images as the bank, the first 2,000 test '
        'images as queries; digits (scikit-learn, never trained on): a '
        '1,000-image bank, 797 queries. "init" is the student at its random '
        'initialisation, before the first step; each stage end is measured '
        'before the next stage re-initialises the student. Minutes: training '
        'wall time including the kNN evaluations, with one torch thread per '
        'run while other runs shared the 2 cores (indicative only; the '
        "README gives the demo's time on an idle machine).",
        '',
    ]
    if seeds:
        rows, d_fm, d_dg = [], [], []
        for key in sorted(seeds):
            r = seeds[key]
            fm = _stage_values(r['knn'], r['stages'])
            dg = _stage_values(r['digits'], r['stages'])
            d_fm.append(fm[-1] - fm[0])
            d_dg.append(dg[-1] - dg[0])
            rows.append(f"| {r['seed']} | {_fmt(fm)} | {fm[-1] - fm[0]:+.1f} "
                        f"| {_fmt(dg)} | {dg[-1] - dg[0]:+.1f} | "
                        f"{r['train_seconds'] / 60:.1f} |")
        r0 = next(iter(seeds.values()))
        n = len(r0['stages']) - 1
        head = ' / '.join(['init'] + [f'stage {i + 1}' for i in range(n)])
        m_fm, se_fm = _mean_se(d_fm)
        m_dg, se_dg = _mean_se(d_dg)
        means = {}
        for key, label in (('knn', 'Fashion-MNIST (2,000 test images)'),
                           ('digits', 'digits, never trained on '
                            '(797 images)')):
            per_seed = [_stage_values(seeds[k][key], seeds[k]['stages'])
                        for k in sorted(seeds)]
            means[label] = [_mean_se([v[i] for v in per_seed])
                            for i in range(len(per_seed[0]))]
        lines += [
            '## The shipped demo over seeds',
            '',
            f"`configs/pretrain/dbot_demo_fashion-mnist.py` as shipped "
            f"({_recipe_text(r0['recipe'])}), seeds "
            f"{', '.join(str(seeds[k]['seed']) for k in sorted(seeds))}: "
            '`python tools/reproduce/demo_study.py seeds`.',
            '',
            f'| seed | Fashion-MNIST kNN: {head} | Δ final − init | '
            f'digits kNN: {head} | Δ final − init | minutes |',
            '|---|---|---|---|---|---|',
            *rows,
            f'| mean ± s.e. | | {m_fm:+.1f} ± {se_fm:.1f} | | '
            f'{m_dg:+.1f} ± {se_dg:.1f} | |',
            '',
            'Mean ± standard error over the seeds (the README table):',
            '',
            '| kNN top-1 (%) | ' + ' | '.join(
                ['random init'] + [f'after stage {i + 1}' for i in range(n)])
            + ' | final − init |',
            '|---|' + '---|' * (n + 2),
            *[f'| {label} | ' + ' | '.join(f'{m:.1f} ± {e:.1f}'
                                           for m, e in vals)
              + f' | {vals[-1][0] - vals[0][0]:+.1f} |'
              for label, vals in means.items()],
            '',
        ]
        first = seeds[sorted(seeds)[0]]
        os.makedirs(osp.join(docs, 'demo_study'), exist_ok=True)
        from dbot_mm.engine.hooks.curve_plot_hook import CurvePlotHook
        CurvePlotHook.plot(
            first['loss'], {
                'Fashion-MNIST': (first['knn'], first['knn'][0][1]),
                'digits (never trained on)':
                (first['digits'], first['digits'][0][1])
            }, first['stages'], osp.join(docs, 'demo_study', 'curves.png'),
            title=f"dbot_demo_fashion-mnist, seed {first['seed']}")
        lines += ['![loss and kNN of the demo, seed '
                  f"{first['seed']}](demo_study/curves.png)", '']
    if sweep:
        lines += [
            '## The sweep (seed 0)',
            '',
            '`python tools/reproduce/demo_study.py sweep`; each row is the '
            'demo config with the recipe shown (bf16 autocast unless '
            '"fp32"). kNN: init / after each stage.',
            '',
            '| row | what it tests | recipe | Fashion-MNIST kNN | Δ | '
            'digits kNN | Δ | minutes |',
            '|---|---|---|---|---|---|---|---|',
        ]
        for name, (what, _) in SWEEP.items():
            r = sweep.get(f'{name}_seed0')
            if r is None:
                continue
            fm = _stage_values(r['knn'], r['stages'])
            dg = _stage_values(r['digits'], r['stages'])
            lines.append(
                f"| {name} | {what} | {_recipe_text(r['recipe'])} | "
                f"{_fmt(fm)} | {fm[-1] - fm[0]:+.1f} | {_fmt(dg)} | "
                f"{dg[-1] - dg[0]:+.1f} | {r['train_seconds'] / 60:.1f} |")
        lines.append('')
    with open(osp.join(docs, 'demo_study.md'), 'w') as f:
        f.write('\n'.join(lines))
    if dip:
        write_dip_report(dip, work_dir, osp.join(docs, 'mini_study'))


def position_floor(fm_root, num=2000):
    """What position alone explains of the stage-1 target, normalised per
    token (``True``) and raw (``False``): ``{norm: (share, loss)}``.

    The demo's teacher at its random initialisation (seed 0) on ``num``
    training images: the share of the per-token normalised target's
    variance that is the per-position mean over images, and the SmoothL1
    (beta 2) loss of predicting that mean, i.e. of a student that knows
    where a token is but nothing of the image.
    """
    import numpy as np
    import torch
    import torch.nn.functional as F
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS
    from mmengine.logging import MMLogger
    from PIL import Image
    init_default_scope('mmpretrain')
    cfg = Config.fromfile(DEMO)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel('WARNING')  # no per-parameter init table
    try:
        model.init_weights()  # DBOT's: the teacher = the student's init
    finally:
        logger.setLevel(level)
    model.eval()
    with open(osp.join(fm_root, 'meta', 'train.txt')) as f:
        names = [line.split()[0] for line in f][:num]
    x = torch.from_numpy(np.stack([
        np.asarray(Image.open(osp.join(fm_root, 'train', n))) for n in names
    ])).float()
    pre = cfg.data_preprocessor
    x = ((x - pre.mean[0]) / pre.std[0])[:, None].expand(-1, 3, -1, -1)
    out = {}
    with torch.no_grad():
        raw = torch.cat([model.teacher_forward(c.contiguous())
                         for c in x.split(250)])
        for norm in (True, False):
            t = raw
            if norm:
                t = (t - t.mean(-1, keepdim=True)) / (
                    t.var(-1, keepdim=True) + 1e-6)**.5
            grand = t.mean((0, 1), keepdim=True)
            pos = t.mean(0, keepdim=True)
            share = float(((pos - grand)**2).sum() * len(t) /
                          ((t - grand)**2).sum())
            loss = float(F.smooth_l1_loss(pos.expand_as(t), t, beta=2.0))
            out[norm] = (share, loss)
    return out


def write_dip_report(dip, work_dir, out_dir):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    os.makedirs(out_dir, exist_ok=True)
    floors = position_floor(osp.join(DATA, 'fashion_mnist'))
    share, floor = floors[True]
    rows = []
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharex=True)
    order = [n for name in DIP for n in (name, 'official-' + name)]
    for key in sorted(dip, key=lambda k: (
            order.index(k.rsplit('_seed', 1)[0])
            if k.rsplit('_seed', 1)[0] in order else len(order), k)):
        r = dip[key]
        official = key.startswith('official-')
        if official:
            raw = [(c[0], c[1]) for c in r['curve']]
            cen = [(c[0], c[3]) for c in r['curve']]
            below = None  # the official loss is logged every half epoch
            name = key[len('official-'):].rsplit('_seed', 1)[0]
            label = f'official code, {name}'
        else:
            spe = r['steps_per_epoch']
            raw = [(s / spe, v) for s, v in r['knn']]
            cen = [(s / spe, v) for s, v in r.get('centred', [])]
            row_floor = floors[r['recipe']['norm_target']][1]
            below = next((e for e, v in r['loss'] if v < row_floor), None)
            name = r['name']
            label = f'dbot_mm, {name}'
        stats = []
        for curve in (raw, cen):
            if not curve:
                stats.append(None)
                continue
            start = curve[0][1]
            low_e, low = min(curve, key=lambda c: c[1])
            back = next((e for e, v in curve if e > low_e and v >= start),
                        None)
            stats.append((start, low, low_e, back, curve[-1][1]))
        rows.append((label, name, stats, below))
        for ax, curve in zip(axes, (raw, cen)):
            if not curve:
                continue
            ax.plot(*zip(*curve), ('--' if official else '-'), label=label,
                    lw=1.2)
    for ax, title in zip(axes, ('kNN on the features (as the monitor)',
                                'kNN on bank-mean-centred features')):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel('epoch (10,000 images, batch 128)')
        ax.set_ylabel('kNN top-1 (%)')
        ax.grid(alpha=0.3)
    for ax in axes:
        ax.legend(fontsize=7, ncol=1)
    fig.tight_layout()
    fig.savefig(osp.join(out_dir, 'dip.png'), dpi=110)
    plt.close(fig)
    whats = {n: w for n, (w, _) in DIP.items()}
    lines = [
        '# The early kNN dip',
        '',
        'Generated by `python tools/reproduce/demo_study.py report` from '
        '`python tools/reproduce/demo_study.py dip --official PATH '
        '--official-timm DIR` (one stage of 4 epochs on 10,000 Fashion-MNIST '
        'images, batch 128, the demo ViT 128 x 4 and its kNN probe every '
        f"{DIP['baseline'][1]['knn_every_iters']} iterations, i.e. every "
        'half epoch; seed 0; dbot_mm in bf16 autocast). Official rows: the '
        'untouched official `models_mae.py` and `util/lr_sched.py` driven by '
        '`tools/reproduce/official_dbot.py` on the same data, recipe and kNN '
        'probe, in fp32 (the official loop has no CPU autocast); its random '
        'initialisation is its own, hence the different start. '
        f'{_machine()}.',
        '',
        '| run | what changes | kNN: init | lowest (epoch) | back to init '
        'at epoch | after 4 epochs | centred kNN: init | lowest (epoch) | '
        'after 4 epochs | loss below the position-only floor at epoch |',
        '|---|---|---|---|---|---|---|---|---|---|',
    ]
    for label, name, (raw_stats, cen_stats), below in rows:
        s0, lo, lo_e, back, end = raw_stats
        cen = ('– | – | –' if cen_stats is None else
               f'{cen_stats[0]:.1f} | {cen_stats[1]:.1f} ({cen_stats[2]:.2f})'
               f' | {cen_stats[4]:.1f}')
        lines.append(
            f'| {label} | {whats.get(name, "")} | {s0:.1f} | {lo:.1f} '
            f'({lo_e:.2f}) | {"–" if back is None else f"{back:.2f}"} | '
            f'{end:.1f} | {cen} | {"–" if below is None else f"{below:.2f}"} |')
    lines += [
        '',
        'Position-only floor: at its random initialisation the demo teacher\'s '
        f'per-token normalised tokens have {share:.0%} of their variance in '
        'the per-position mean over images; a student that predicted that '
        'mean, knowing where a token is but nothing of the image, would score '
        f'a SmoothL1 loss of {floor:.4f} (2,000 training images, seed 0; '
        '`position_floor` in `demo_study.py`); for the raw tokens of '
        f'`no-target-norm` the share is {floors[False][0]:.0%} and the loss '
        f'{floors[False][1]:.4f}. The last column is the first epoch at which '
        'the logged training loss (10-iteration means) is below the floor of '
        'the row\'s target.',
        '', '![kNN during the first epochs](dip.png)', '']
    findings = osp.join(REPO, 'docs', 'mini_study', 'dip_findings.md')
    if osp.isfile(findings):  # the reading of the table, kept by hand
        with open(findings) as f:
            lines += [f.read()]
    with open(osp.join(out_dir, 'dip.md'), 'w') as f:
        f.write('\n'.join(lines))
    # the same section in docs/mini_study.md (kept when mini_study.py
    # rewrites that report)
    report = osp.join(REPO, 'docs', 'mini_study.md')
    body = '\n'.join(['## The early kNN dip'] + lines[1:]).replace(
        '](dip.png)', '](mini_study/dip.png)')
    splice_block(report, 'dip', body)


def splice_block(report, name, body):
    """Write ``body`` into ``report`` between ``<!-- begin: NAME -->`` and
    ``<!-- end: NAME -->`` (appended when absent); ``mini_study.py`` keeps
    such blocks when it rewrites its report."""
    block = f'\n<!-- begin: {name} -->\n{body}\n<!-- end: {name} -->\n'
    with open(report) as f:
        text = f.read()
    pattern = rf'\n<!-- begin: {name} -->.*?<!-- end: {name} -->\n'
    text = (re.sub(pattern, lambda _: block, text, flags=re.S)
            if re.search(pattern, text, flags=re.S) else
            text.rstrip('\n') + '\n' + block)
    with open(report, 'w') as f:
        f.write(text)


def _machine():
    import torch
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            cpu = next(line.split(':', 1)[1].strip() for line in f
                       if line.startswith('model name'))
    except (OSError, StopIteration):
        pass
    return f'{cpu}, {os.cpu_count()} cores, torch {torch.__version__}'



def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('what', choices=['sweep', 'seeds', 'dip', 'report'])
    ap.add_argument('--only', nargs='+', default=None,
                    help='run only these sweep / dip rows')
    ap.add_argument('--seeds', type=int, nargs='+', default=None)
    ap.add_argument('--official', default=None,
                    help='clone of github liuxingbin/dbot (dip only)')
    ap.add_argument('--official-timm', default=None)
    ap.add_argument('--work-dir', default=WORK)
    ap.add_argument('--threads', type=int, default=1,
                    help='torch threads per run (1: runs stay comparable '
                    'on a shared 2-core machine)')
    ap.add_argument('--force', action='store_true')
    args = ap.parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)
    sys.path.insert(0, REPO)
    import dbot_mm  # noqa: F401
    if args.what == 'report':
        write_reports(args.work_dir)
        return
    fm_root, digits_root = prepare_data()
    if args.what == 'sweep':
        for name, (_, r) in SWEEP.items():
            if args.only and name not in args.only:
                continue
            for seed in args.seeds or [0]:
                run(name, r, seed, 'sweep', args, fm_root, digits_root)
    elif args.what == 'seeds':
        from mmengine.config import Config
        shipped = shipped_recipe(Config.fromfile(DEMO))
        for seed in args.seeds or [0, 1, 2]:
            reuse_sweep_run(shipped, seed, args.work_dir)
            run('demo', shipped, seed, 'seeds', args, fm_root, digits_root)
    elif args.what == 'dip':
        for name, (_, r) in DIP.items():
            if args.only and name not in args.only:
                continue
            for seed in args.seeds or [0]:
                run(name, r, seed, 'dip', args, fm_root, digits_root)
                if args.official and name == 'baseline':
                    run_official(name, r, seed, args, fm_root)


def shipped_recipe(cfg):
    """The knobs of the shipped demo config, read back from it."""
    hook = next(h for h in cfg.custom_hooks
                if h['type'] == 'StageBootstrapHook')
    stages = hook['stages']
    arch = cfg.model.backbone.arch
    warm = cfg.param_scheduler[0]  # as stage_lr_schedulers writes it
    return recipe(
        dims=arch['embed_dims'], depth=arch['num_layers'],
        heads=arch['num_heads'], dec_dims=cfg.model.neck.decoder_embed_dim,
        dec_depth=cfg.model.neck.decoder_depth,
        batch=cfg.train_dataloader.batch_size,
        blr=cfg.optim_wrapper.optimizer.lr * 256 /
        cfg.train_dataloader.batch_size,
        warmup=(warm['end'] - warm['begin']
                if warm['type'] == 'StageLinearLR' else 0),
        stage_epochs=[b - a for a, b in zip(stages, stages[1:])],
        mask_ratio=cfg.model.backbone.mask_ratio,
        num_train=cfg.num_train,
        amp=cfg.optim_wrapper.type == 'AutocastOptimWrapper',
        norm_target=cfg.model.head.norm_target)


if __name__ == '__main__':
    main()
