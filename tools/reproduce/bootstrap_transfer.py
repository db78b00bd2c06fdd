"""Transfer part of ``bootstrap_study.py``: a pretrained encoder against the
same encoder at random initialisation on the mosaic det / seg tasks.

Every setting changes one thing against ``base`` (the mini study's transfer
recipe at the demo's ViT 128 x 4): the number of training scenes (at the
same number of iterations), layer decay, the learning rate, the size of
the objects, or the length of fine-tuning. Seed ``s`` fine-tunes the
seed-``s`` pretrained encoder and the seed-``s`` random init; the val scenes
are fixed per mosaic set.
"""
import copy
import json
import os
import os.path as osp
import time

import demo_study
from bootstrap_study import ROWS, SHIFT, log, pretrained_checkpoint

# what a transfer run is described by; per-setting changes below
BASE = dict(num_train=600, num_val=200, scale=[0.75, 1.25], layer_decay=True,
            lr_mult=1.0, det_epochs=4, seg_iters=400)
SETTINGS = {
    'base': ('600 training scenes, layer decay, lr 4e-4, objects 0.75-1.25'
             ' x 28 px', {}),
    'low-data': ('150 training scenes, as many iterations as base',
                 dict(num_train=150, det_epochs=16)),
    'no-layer-decay': ('one learning rate for every block',
                       dict(layer_decay=False)),
    'lr-x0.5': ('lr 2e-4', dict(lr_mult=0.5)),
    'lr-x2': ('lr 8e-4', dict(lr_mult=2.0)),
    'pretrain-scale': ('objects 1.0-1.4 x 28 px, the sizes pretraining saw '
                       '(28 px items, RandomResizedCrop of 0.5-1 of the area)',
                       dict(scale=[1.0, 1.4])),
    'short': ('a quarter of the iterations (det 1 epoch, seg 100 steps): '
              'where a better start should show most',
              dict(det_epochs=1, seg_iters=100)),
}
ARCH = dict(embed_dims=128, num_layers=4, num_heads=4,
            feedforward_channels=512)
LR = 4e-4
METRICS = dict(det=('coco/bbox_mAP', 'coco/segm_mAP'), seg=('mIoU', ))


def setting(name):
    s = copy.deepcopy(BASE)
    s.update(SETTINGS[name][1])
    return s


def mosaic(s, data_root):
    """The mosaic set of a setting (its scale; all of its scenes)."""
    from dbot_mm.datasets import generate_mosaic
    tag = 'scale{:g}-{:g}'.format(*s['scale'])
    root = osp.join(data_root, f'mosaic_{tag}')
    generate_mosaic(root, num_train=BASE['num_train'],
                    num_val=BASE['num_val'], canvas_size=64,
                    objects_per_image=(1, 3), scale_range=tuple(s['scale']),
                    seed=0)
    return root


def task_cfg(task, s, checkpoint, root, work_dir, seed):
    import mini_study
    p = dict(arch=ARCH, mosaic=dict(canvas=64),
             det=dict(epochs=s['det_epochs'], batch_size=8,
                      lr=LR * s['lr_mult'], warmup=50),
             seg=dict(iters=s['seg_iters'], batch_size=8,
                      lr=LR * s['lr_mult'], warmup=50))
    cfg = mini_study.task_cfg(task, p, checkpoint, dict(mosaic=root),
                              work_dir, seed, verbose=False)
    cfg.train_dataloader.dataset.indices = s['num_train']
    if not s['layer_decay']:
        cfg.optim_wrapper.paramwise_cfg.layer_decay_rate = 1.0
    cfg.default_hooks.logger.interval = 50
    return cfg


def run_one(task, name, encoder, seed, checkpoint, args, data_root):
    from mmengine.runner import Runner
    s = setting(name)
    work_dir = osp.join(args.work_dir, 'transfer', name,
                        f'{task}_{encoder}_seed{seed}')
    out = osp.join(work_dir, 'result.json')
    key = json.dumps(dict(s, task=task, checkpoint=checkpoint), sort_keys=True)
    res = None if args.force else demo_study.cached(out, key)
    if res:
        log(f'transfer {name} {task} {encoder} seed {seed}: cached')
        return res
    root = mosaic(s, data_root)
    cfg = task_cfg(task, s, checkpoint, root, work_dir, seed)
    log(f'transfer {name} {task} {encoder} seed {seed}')
    t0 = time.time()
    runner = Runner.from_cfg(cfg)
    runner.train()
    metrics = {}
    for m in METRICS[task]:
        v = float(runner.message_hub.get_scalar(f'val/{m}').current())
        metrics[m] = v * 100 if task == 'det' else v
    res = dict(task=task, setting=name, encoder=encoder, seed=seed, key=key,
               checkpoint=checkpoint, seconds=round(time.time() - t0, 1),
               **metrics)
    os.makedirs(work_dir, exist_ok=True)
    with open(out, 'w') as f:
        json.dump(res, f)
    log(f'transfer {name} {task} {encoder} seed {seed}: ' +
        ', '.join(f'{k} {v:.1f}' for k, v in metrics.items()) +
        f' ({res["seconds"] / 60:.1f} min)')
    del runner
    return res


def best_dbot_row(work_dir):
    """The bootstrapped row (2 or more stages) with the highest mean linear
    probe over the seeds that finished, and that mean: what dBOT adds to
    the 1-stage random teacher is the bootstrapped one."""
    import statistics
    best = None
    for row, (_, target, epochs) in ROWS.items():
        if target != 'dbot' or len(epochs) < 2 or row in SHIFT:
            continue
        vals = []
        for seed in range(10):
            f = osp.join(work_dir, 'pretrain', f'{row}_seed{seed}',
                         'result.json')
            if osp.isfile(f):
                with open(f) as fh:
                    vals.append(json.load(fh)['linear'])
        if vals and (best is None or statistics.fmean(vals) > best[1]):
            best = (row, statistics.fmean(vals))
    if best is None:
        raise SystemExit('transfer: no finished dBOT pretraining run under '
                         f'{work_dir}/pretrain; run `pretrain` first')
    return best


def main(args, paths):
    data_root = osp.join(osp.dirname(paths[0]))
    encoder = args.encoder or best_dbot_row(args.work_dir)[0]
    for seed in args.seeds:
        ckpt = pretrained_checkpoint(args.work_dir, encoder, seed)
        for name in args.settings or list(SETTINGS):
            for task in args.tasks:
                for enc, c in ((encoder, ckpt), ('random_init', None)):
                    run_one(task, name, enc, seed, c, args, data_root)
