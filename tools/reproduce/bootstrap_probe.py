"""Probe part of ``bootstrap_study.py``: do the frozen encoders carry what
the mosaic segmentation needs, and at which input scale?

Fine-tuning mixes feature quality with optimisation (learning rate, layer
decay, how far the weights must move). This probe takes optimisation out:
each encoder stays frozen, its last-block patch tokens are read for every
mosaic scene, and one multinomial logistic regression per encoder
(``dbot_mm.analysis.linear_probe``: standardised features, L-BFGS, fixed
small L2) predicts each patch's majority label (10 classes + background).
Score: mIoU over the 10 object classes on the 200 val scenes, patch level.
A second probe pools each object's patch tokens (one sample per scene and
object class) and classifies the pooled token, as the image-level probe of
``pretrain`` does with whole Fashion-MNIST images: accuracy on the val
scenes' objects.

Two input scales:
* ``64``: the scenes as fine-tuning sees them (64 px, a 16 x 16 grid: the
  position table is interpolated from the 8 x 8 one of pretraining);
* ``32``: the scenes resized to 32 px, the pretraining input size (an
  8 x 8 grid, the position table as trained, objects half as many pixels).

The layout probe (:func:`layout_probe`) then asks where, between the
pretraining images and the scenes, an encoder's image-level lead goes: the
same Fashion-MNIST images as pretrained, centred on the 64 px canvas,
anywhere on it, or resized to it.
"""
import json
import os
import os.path as osp

import numpy as np
import torch

import demo_study
from bootstrap_study import (BASELINE, ROWS, log, pretrain_cfg,
                             pretrained_checkpoint)

ENCODERS = ['random_init', 'transfer_init'] + list(ROWS)
RESOLUTIONS = (64, 32)
MEAN, STD = [55.9] * 3, [84.9] * 3
NUM_CLASSES = 11  # background + 10 objects (the seg maps' 0 .. 10)


def scenes(root, split, res):
    """Normalised images at ``res`` px and per-patch majority labels."""
    import glob

    from PIL import Image

    from dbot_mm.analysis import load_images
    sub = 'training' if split == 'train' else 'validation'
    imgs = sorted(glob.glob(osp.join(root, 'ade', 'images', sub, '*.jpg')))
    maps = [osp.join(root, 'ade', 'annotations', sub,
                     osp.basename(p)[:-4] + '.png') for p in imgs]
    x = load_images(imgs, (res, res), MEAN, STD, to_rgb=False)
    grid = res // 4
    labels = []
    for m in maps:
        a = np.asarray(Image.open(m), dtype=np.int64)
        c = a.shape[0] // grid  # pixels per patch side in the 64 px map
        blocks = a.reshape(grid, c, grid, c).transpose(0, 2, 1, 3)
        blocks = blocks.reshape(grid * grid, c * c)
        counts = np.stack([(blocks == k).sum(1) for k in range(NUM_CLASSES)],
                          1)
        labels.append(counts.argmax(1))
    return x, torch.from_numpy(np.concatenate(labels))


def miou(pred, gt):
    ious = []
    for k in range(1, NUM_CLASSES):
        inter = ((pred == k) & (gt == k)).sum().item()
        union = ((pred == k) | (gt == k)).sum().item()
        if union:
            ious.append(inter / union)
    return 100 * float(np.mean(ious))


def encoder(name, seed, work_dir, res):
    """The frozen encoder as ViTDense at ``res`` px (position table resized
    as fine-tuning resizes it)."""
    from dbot_mm.analysis.vit_loading import load_vit
    if name == 'transfer_init':
        # the fine-tuning baseline: the dense backbone's own initialisation
        import bootstrap_transfer
        from mmengine.registry import init_default_scope
        from mmengine.runner import set_random_seed
        from mmseg.registry import MODELS
        cfg = bootstrap_transfer.task_cfg(
            'seg', bootstrap_transfer.setting('base'), None, '/nonexistent',
            '/nonexistent', seed)
        init_default_scope('mmseg')
        set_random_seed(seed)
        bb = cfg.model.backbone
        bb.update(img_size=res)
        model = MODELS.build(bb)
        model.init_weights()
        return model.eval()
    if name == 'random_init':
        # the untrained student: every pretraining row's starting point
        ckpt = osp.join(work_dir, 'probe', f'random_init_seed{seed}.pth')
        if not osp.isfile(ckpt):
            cfg, _, _ = pretrain_cfg(BASELINE, seed, '/nonexistent',
                                     *demo_study.prepare_data())
            from mini_study import untrained_backbone
            bb = untrained_backbone(cfg.model, seed)
            os.makedirs(osp.dirname(ckpt), exist_ok=True)
            torch.save({'state_dict': {f'backbone.{k}': v
                                       for k, v in bb.state_dict().items()}},
                       ckpt)
    else:
        ckpt = pretrained_checkpoint(work_dir, name, seed)
    model, _ = load_vit(ckpt, num_heads=4, component='backbone',
                        img_size=res)
    return model


@torch.no_grad()
def patch_tokens(model, images, batch_size=100):
    """(N * h * w, C) last-block patch tokens, before the final norm, in
    row-major patch order."""
    feats = []
    for x in images.split(batch_size):
        x, hw = model.patch_embed(x)
        x = model._embed_tokens(x, hw)
        for layer in model.layers:
            x = model._apply_layer(layer, x, hw)
        feats.append(x[:, 1:].reshape(-1, x.shape[-1]).float())
    return torch.cat(feats)


def objects(feats, labels, res):
    """One sample per (scene, object class): the mean token of the patches
    labelled with that class, as the image-level probe pools an image."""
    per = (res // 4)**2
    f, y = feats.view(-1, per, feats.shape[-1]), labels.view(-1, per)
    out, lab = [], []
    for i in range(f.shape[0]):
        for k in y[i].unique().tolist():
            if k:
                out.append(f[i][y[i] == k].mean(0))
                lab.append(k)
    return torch.stack(out), torch.tensor(lab)


def probe_one(name, seed, res, data, work_dir, force=False):
    from dbot_mm.analysis import linear_probe
    out = osp.join(work_dir, 'probe', f'{name}_seed{seed}_res{res}.json')
    if osp.isfile(out) and not force:
        with open(out) as f:
            return json.load(f)
    (xt, yt), (xv, yv) = data[res]
    model = encoder(name, seed, work_dir, res)
    ft, fv = patch_tokens(model, xt), patch_tokens(model, xv)
    pred = linear_probe(ft, yt, fv, num_classes=NUM_CLASSES, max_iter=300)
    (ot, lt), (ov, lv) = objects(ft, yt, res), objects(fv, yv, res)
    obj = linear_probe(ot, lt, ov, num_classes=NUM_CLASSES)
    res_ = dict(encoder=name, seed=seed, res=res, mIoU=miou(pred, yv),
                acc=100 * float((pred == yv).float().mean()),
                fg_acc=100 * float((pred == yv)[yv > 0].float().mean()),
                object_acc=100 * float((obj == lv).float().mean()))
    os.makedirs(osp.dirname(out), exist_ok=True)
    with open(out, 'w') as f:
        json.dump(res_, f)
    log(f'probe {name} seed {seed} {res} px: mIoU {res_["mIoU"]:.1f}')
    return res_


def layouts(images, seed=0):
    """The Fashion-MNIST val / train images (32 px, normalised) placed as
    the scenes place objects, one change at a time: ``fm32`` as pretraining
    saw them; ``pad64`` centred on a 64 px black canvas (same pixels per
    object, 16 x 16 grid, interpolated position table); ``shift64`` at a
    random place on that canvas; ``up64`` resized to 64 px (the object
    twice as large in patches)."""
    import torch.nn.functional as F
    black = (0 - MEAN[0]) / STD[0]
    g = torch.Generator().manual_seed(seed)
    pad = F.pad(images, (16, 16, 16, 16), value=black)
    shift = torch.full_like(pad, black)
    for i, (dy, dx) in enumerate(torch.randint(0, 33, (len(images), 2),
                                               generator=g).tolist()):
        shift[i, :, dy:dy + 32, dx:dx + 32] = images[i]
    return dict(fm32=images, pad64=pad, shift64=shift,
                up64=F.interpolate(images, scale_factor=2, mode='bicubic',
                                   align_corners=False))


LAYOUTS = ('fm32', 'pad64', 'shift64', 'up64')
LAYOUT_ENCODERS = ('random_init', 'random_teacher', 'dbot_3stage', 'mae',
                   'dbot_3stage_shift')


def layout_probe(name, seed, data, work_dir, force=False):
    """Linear probe (mean patch token) of one frozen encoder on the
    Fashion-MNIST images in every layout of :func:`layouts` (2,000 train
    images against 1,000 test images)."""
    from dbot_mm.analysis import linear_probe
    out = osp.join(work_dir, 'probe', f'layout_{name}_seed{seed}.json')
    if osp.isfile(out) and not force:
        with open(out) as f:
            return json.load(f)
    (xt, yt), (xv, yv) = data
    res = dict(encoder=name, seed=seed)
    for lay in LAYOUTS:
        size = xt[lay].shape[-1]
        model = encoder(name, seed, work_dir, size)
        per = (size // 4)**2  # patches per image
        ft, fv = (patch_tokens(model, x[lay]) for x in (xt, xv))
        ft = ft.view(-1, per, ft.shape[-1]).mean(1)
        fv = fv.view(-1, per, fv.shape[-1]).mean(1)
        pred = linear_probe(ft, yt, fv, num_classes=10)
        res[lay] = 100 * float((pred == yv).float().mean())
    with open(out, 'w') as f:
        json.dump(res, f)
    log(f'layout probe {name} seed {seed}: ' +
        ', '.join(f'{k} {res[k]:.1f}' for k in LAYOUTS))
    return res


def main(args, paths):
    import bootstrap_transfer
    from mini_study import read_split

    from dbot_mm.analysis import load_images
    root = bootstrap_transfer.mosaic(bootstrap_transfer.setting('base'),
                                     osp.dirname(paths[0]))
    data = {r: (scenes(root, 'train', r), scenes(root, 'val', r))
            for r in RESOLUTIONS}
    for seed in args.seeds:
        for name in ENCODERS:
            if ready(name, seed, args.work_dir):
                for r in RESOLUTIONS:
                    probe_one(name, seed, r, data, args.work_dir,
                              args.force)
    fm = []
    for split, n in (('train', 2000), ('val', 1000)):
        files, labels = read_split(paths[0], split)
        x = load_images(files[:n], (32, 32), MEAN, STD, to_rgb=False)
        fm.append((layouts(x, seed=len(fm)), labels[:n]))
    for seed in args.seeds:
        for name in LAYOUT_ENCODERS:
            if ready(name, seed, args.work_dir):
                layout_probe(name, seed, fm, args.work_dir, args.force)


def ready(name, seed, work_dir):
    """Whether the encoder exists (the untrained ones always do); a
    pretraining run that has not finished is skipped with a note."""
    if name in ('random_init', 'transfer_init'):
        return True
    try:
        pretrained_checkpoint(work_dir, name, seed)
        return True
    except SystemExit as e:
        log(f'probe: skipped ({e})')
        return False


if __name__ == '__main__':  # pragma: no cover
    raise SystemExit('run it as `bootstrap_study.py probe`')
