"""Does bootstrapping help at equal budget, and does the encoder transfer?

Two studies on the demo's model, data and recipe
(``configs/pretrain/dbot_demo_fashion-mnist.py``: ViT 128 x 4, patch 4,
10,000 Fashion-MNIST images, batch 128, blr 1.5e-3, bf16 autocast):

``pretrain``: 15 epochs in total for every row, split into 1, 2 or 3
stages (1 x 15, 8 + 7, 5 + 5 + 5), with MAE (pixel target, 15 epochs) and
the untrained encoder as rows. Stages are long enough to get past the early
kNN dip (about 2 epochs of 78 steps at this scale, ``docs/mini_study.md``);
whether each stage also ends on its kNN plateau is measured, not assumed:
the Fashion-MNIST monitor runs every epoch. Every final encoder is scored by
kNN (k = 20, T = 0.07) and a linear probe on its mean patch token, 10,000
train images against the 2,000 test images.

``transfer``: the best pretrained encoder of ``pretrain`` and the same
encoder at random initialisation, fine-tuned on the Fashion-MNIST mosaic
scenes (Cascade Mask R-CNN, UperNet; ``configs/reproduce/``) under a small
grid of settings: training-set size, layer decay on / off, learning rate,
object scale.

Finished runs are cached as JSON under the work dir, so a study can be
completed across sittings; ``report`` writes the docs from the cache.

    python tools/reproduce/bootstrap_study.py pretrain [--rows R ..] \
        [--seeds S ..]
    python tools/reproduce/bootstrap_study.py transfer [--settings X ..] \
        [--tasks seg det] [--seeds S ..]
    python tools/reproduce/bootstrap_study.py report
"""
import argparse
import json
import os
import os.path as osp
import sys
import time

HERE = osp.dirname(osp.abspath(__file__))
sys.path.insert(0, HERE)

import demo_study  # noqa: E402
from mini_study import EvalData, score, untrained_backbone  # noqa: E402
from dbot_mm.utils.config_arch import mae_model  # noqa: E402

REPO = demo_study.REPO
WORK = osp.join(REPO, 'work_dirs', 'bootstrap_study')
TOTAL_EPOCHS = 15

# row -> (label, target, epochs per stage)
ROWS = {
    'random_teacher': ('random teacher, 1 stage', 'dbot', [15]),
    'dbot_2stage': ('dBOT, 2 stages', 'dbot', [8, 7]),
    'dbot_3stage': ('dBOT, 3 stages', 'dbot', [5, 5, 5]),
    'mae': ('MAE (pixel target)', 'mae', [15]),
    'dbot_3stage_shift': ('dBOT, 3 stages, items shifted', 'dbot', [5, 5, 5]),
}
BASELINE = 'random_teacher'  # rows are paired against it
# rows that change the data, not the method: each image is shifted by up to
# this many pixels in x and y (zero padding, then a 32 px crop) before the
# demo's RandomResizedCrop, so items are no longer always centred (the
# mosaic scenes put them anywhere). They test whether pretraining on centred
# items is what costs the encoder in transfer, and are not candidates for
# `transfer`'s default encoder.
SHIFT = {'dbot_3stage_shift': 12}


def log(msg):
    print(f'[bootstrap_study {time.strftime("%H:%M:%S")}] {msg}', flush=True)


# --------------------------------------------------------------- pretrain
def row_recipe(row):
    from mmengine.config import Config
    r = demo_study.shipped_recipe(Config.fromfile(demo_study.DEMO))
    r['stage_epochs'] = list(ROWS[row][2])
    assert sum(r['stage_epochs']) == TOTAL_EPOCHS
    if row in SHIFT:
        r['shift'] = SHIFT[row]  # in the cache key; never a demo seed run
    return r


def pretrain_cfg(row, seed, work_dir, fm_root, digits_root):
    r = row_recipe(row)
    cfg, stages = demo_study.build_cfg(r, seed, work_dir, fm_root,
                                       digits_root)
    if ROWS[row][1] == 'mae':
        # the data preprocessor (input normalisation) stays the config's
        bb = cfg.model.backbone
        cfg.model = mae_model(bb.arch, bb.img_size, bb.patch_size,
                              cfg.model.neck)
        cfg.custom_hooks = [h for h in cfg.custom_hooks
                            if h['type'] != 'StageBootstrapHook']
    if row in SHIFT:
        pipe = cfg.train_dataloader.dataset.pipeline
        pipe.insert(1, dict(type='RandomCrop',
                            crop_size=cfg.model.backbone.img_size,
                            padding=SHIFT[row], pad_val=0))
    for h in cfg.custom_hooks:
        if h['type'] == 'KNNMonitorHook':
            h['stages'] = stages
            if not h.get('name'):  # every epoch: is each stage on its plateau?
                h['interval'] = 1
    cfg.default_hooks.logger.interval = 50
    return cfg, stages, r


def pretrained_checkpoint(work_dir, row, seed):
    """The final checkpoint of a finished pretraining run (a reused demo
    seed keeps its own), or exit naming the command that makes it."""
    f = osp.join(work_dir, 'pretrain', f'{row}_seed{seed}', 'result.json')
    ckpt = None
    if osp.isfile(f):
        with open(f) as fh:
            ckpt = json.load(fh).get('checkpoint')
    if not ckpt or not osp.isfile(ckpt):
        raise SystemExit(f'no checkpoint of {row} seed {seed} ({ckpt or f}); '
                         f'run `pretrain --rows {row} --seeds {seed}` first')
    return ckpt


def eval_data(fm_root):
    return EvalData(fm_root, mean=[55.9] * 3, std=[84.9] * 3)


def run_pretrain(row, seed, args, paths, data):
    import torch
    from mmengine.runner import Runner
    work_dir = osp.join(args.work_dir, 'pretrain', f'{row}_seed{seed}')
    out = osp.join(work_dir, 'result.json')
    cfg, stages, r = pretrain_cfg(row, seed, work_dir, *paths)
    key = json.dumps(dict(r, target=ROWS[row][1]), sort_keys=True)
    res = None if args.force else demo_study.cached(out, key)
    if res:
        log(f'{row} seed {seed}: cached')
        return res
    if not args.no_reuse:
        res = reuse_demo_seed(row, seed, r, key, data, work_dir)
        if res:
            return res
    log(f'{row} seed {seed}: stages {stages}')
    t0 = time.time()
    runner = Runner.from_cfg(cfg)
    runner.train()
    secs = time.time() - t0
    hub = runner.message_hub
    res = dict(row=row, seed=seed, key=key, stages=stages,
               steps_per_epoch=len(runner.train_dataloader),
               train_seconds=round(secs, 1),
               monitor=hub.get_info('knn/history', []),
               digits=hub.get_info('knn/digits/history', []),
               loss=hub.get_info('curves/loss', []),
               checkpoint=osp.join(work_dir, f'epoch_{stages[-1]}.pth'),
               threads=torch.get_num_threads(),
               **score(runner.model.backbone, data))
    with open(out, 'w') as f:
        json.dump(res, f)
    log(f'{row} seed {seed}: monitor kNN {res["monitor"][0][1]:.1f} -> '
        f'{res["monitor"][-1][1]:.1f}; final kNN {res["knn"]:.1f}, linear '
        f'{res["linear"]:.1f} ({secs / 60:.1f} min)')
    del runner
    return res


def reuse_demo_seed(row, seed, r, key, data, work_dir):
    """The 3 x 5 row is the shipped demo: a seed that ``demo_study.py
    seeds`` already trained is scored from its checkpoint instead of being
    trained again. Its monitor ran at the stage ends only, and with the
    thread count of that study (``threads`` in the result)."""
    src = osp.join(demo_study.WORK, 'seeds', f'demo_seed{seed}')
    f = osp.join(src, 'result.json')
    if not osp.isfile(f):
        return None
    with open(f) as fh:
        demo = json.load(fh)
    if demo.get('key') != json.dumps(r, sort_keys=True):
        return None
    from mmengine.registry import init_default_scope
    from mmengine.runner import load_checkpoint
    from mmpretrain.registry import MODELS
    cfg, stages, _ = pretrain_cfg(row, seed, work_dir, *demo_study.
                                  prepare_data())
    init_default_scope('mmpretrain')
    model = MODELS.build(cfg.model)
    ckpt = osp.join(src, f'epoch_{stages[-1]}.pth')
    load_checkpoint(model, ckpt, map_location='cpu', strict=True,
                    logger='silent')
    res = dict(row=row, seed=seed, key=key, stages=stages,
               steps_per_epoch=demo['steps_per_epoch'],
               train_seconds=demo['train_seconds'], monitor=demo['knn'],
               digits=demo['digits'], loss=demo['loss'], checkpoint=ckpt,
               source='demo_study.py seeds (1 torch thread, monitor at the '
               'stage ends only)', threads=1,
               **score(model.backbone, data))
    os.makedirs(work_dir, exist_ok=True)
    with open(osp.join(work_dir, 'result.json'), 'w') as fh:
        json.dump(res, fh)
    log(f'{row} seed {seed}: the demo study\'s run {src}; final kNN '
        f'{res["knn"]:.1f}, linear {res["linear"]:.1f}')
    return res


def run_random_init(seed, args, paths, data):
    work_dir = osp.join(args.work_dir, 'pretrain', f'random_init_seed{seed}')
    out = osp.join(work_dir, 'result.json')
    cfg, _, r = pretrain_cfg(BASELINE, seed, work_dir, *paths)
    key = json.dumps(r, sort_keys=True)
    res = None if args.force else demo_study.cached(out, key)
    if res:
        return res
    res = dict(row='random_init', seed=seed, key=key,
               **score(untrained_backbone(cfg.model, seed), data))
    os.makedirs(work_dir, exist_ok=True)
    with open(out, 'w') as f:
        json.dump(res, f)
    log(f'random init seed {seed}: kNN {res["knn"]:.1f} linear '
        f'{res["linear"]:.1f}')
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('what',
                    choices=['pretrain', 'transfer', 'probe', 'report'])
    ap.add_argument('--rows', nargs='+', default=None, choices=list(ROWS))
    ap.add_argument('--settings', nargs='+', default=None,
                    help='transfer settings (default: all)')
    ap.add_argument('--tasks', nargs='+', default=['seg', 'det'],
                    choices=['seg', 'det'])
    ap.add_argument('--encoder', default=None, choices=list(ROWS),
                    help='pretrained encoder to transfer (default: the dBOT '
                    'row with the best mean linear probe)')
    ap.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    ap.add_argument('--work-dir', default=WORK)
    ap.add_argument('--threads', type=int, default=1,
                    help='torch threads per run: the study ran two 1-thread '
                    'runs at a time (the thread count changes float rounding; '
                    'keep it fixed within a study)')
    ap.add_argument('--force', action='store_true')
    ap.add_argument('--no-reuse', action='store_true',
                    help='train the 3 x 5 row even where the demo study has '
                    'that seed (its monitor then runs every epoch)')
    args = ap.parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)
    sys.path.insert(0, REPO)
    import dbot_mm  # noqa: F401
    if args.what == 'report':
        import bootstrap_report
        bootstrap_report.write(args.work_dir)
        return
    paths = demo_study.prepare_data()
    if args.what == 'pretrain':
        data = eval_data(paths[0])
        for seed in args.seeds:
            run_random_init(seed, args, paths, data)
            for row in args.rows or list(ROWS):
                run_pretrain(row, seed, args, paths, data)
    elif args.what == 'transfer':
        import bootstrap_transfer
        bootstrap_transfer.main(args, paths)
    elif args.what == 'probe':
        import bootstrap_probe
        bootstrap_probe.main(args, paths)


if __name__ == '__main__':
    main()
