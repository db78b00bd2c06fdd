"""Train the official dBOT code on an image folder and log the student's kNN.

The official ``models_mae.py`` / ``util/lr_sched.py`` are imported from an
untouched local clone of github liuxingbin/dbot (never vendored), and driven
the way ``main_pretrain.py`` / ``engine_pretrain.py`` drive them: the same
student/teacher construction, timm's ``add_weight_decay`` groups, per-
iteration ``adjust_learning_rate`` with ``stage_epochs``, ``clip_grad``,
teacher <- student and ``initialize_weights()`` at every stage boundary.
Only the data and the kNN probe are ours: the image folder written by
``tools/dataset_converters/fashion_mnist.py`` with the demo's augmentation,
and :func:`dbot_mm.engine.hooks.knn_monitor_hook.knn_classify` on the mean
patch token of the full image (the encoder's final norm applied), exactly
what ``KNNMonitorHook`` computes for dbot_mm.  This is what makes the two
curves of ``docs/mini_study.md`` comparable.

    git clone https://github.com/liuxingbin/dbot /tmp/dbot_official
    pip install --no-deps --target /tmp/timm0412 timm==0.4.12
    python tools/reproduce/official_dbot.py --official /tmp/dbot_official \\
        --official-timm /tmp/timm0412 --data-root data/fashion_mnist \\
        --stage-epochs 0 4 --knn-every 0.25 --out official.json
"""
import argparse
import json
import math
import os.path as osp
import sys
import time
from functools import partial

import numpy as np
import torch
import torch.nn as nn

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)  # this checkout's dbot_mm, not another one
sys.path.insert(0, osp.join(REPO, 'tools', 'benchmark'))
from train_step import import_official  # noqa: E402


def read_folder(root, split, limit=None):
    """uint8 (N, H, W) images and labels of a converted image folder."""
    from PIL import Image
    with open(osp.join(root, 'meta', f'{split}.txt')) as f:
        rows = [line.split() for line in f if line.strip()]
    if limit:
        rows = rows[:limit]
    imgs = np.stack([
        np.asarray(Image.open(osp.join(root, split, name)).convert('L'))
        for name, _ in rows
    ])
    return torch.from_numpy(imgs), torch.tensor([int(y) for _, y in rows])


class Augmented(torch.utils.data.Dataset):
    """The demo's train pipeline: RandomResizedCrop (bicubic), flip, 3 equal
    channels normalised with the demo's mean / std."""

    def __init__(self, imgs, size, crop_scale, mean, std):
        from torchvision import transforms as T
        self.imgs = imgs
        self.tf = T.Compose([
            T.RandomResizedCrop(size, scale=crop_scale,
                                interpolation=T.InterpolationMode.BICUBIC),
            T.RandomHorizontalFlip(),
        ])
        self.mean, self.std = mean, std

    def __len__(self):
        return len(self.imgs)

    def __getitem__(self, i):
        x = self.imgs[i][None].float()
        x = self.tf(x).clamp(0, 255)
        return ((x - self.mean) / self.std).expand(3, -1, -1), 0


@torch.no_grad()
def embed(model, imgs, mean, std, batch=256):
    """Mean patch token of the full image, the encoder's norm applied."""
    was = model.training
    model.eval()
    feats = []
    with torch.random.fork_rng():  # forward_encoder shuffles tokens
        for chunk in imgs.split(batch):
            x = ((chunk[:, None].float() - mean) / std).expand(-1, 3, -1, -1)
            tokens, _, _ = model.forward_encoder(x, mask_ratio=0.0)
            feats.append(tokens[:, 1:].mean(1))
    model.train(was)
    return torch.cat(feats)


def knn(model, bank, queries, mean, std, k=20, T=0.07):
    """kNN top-1 on the raw features and on bank-mean-centred features
    (what ``KNNMonitorHook`` and ``KNNMonitorHook(centre=True)`` log)."""
    from dbot_mm.engine.hooks.knn_monitor_hook import knn_classify
    b, q = embed(model, bank[0], mean, std), embed(model, queries[0], mean,
                                                   std)
    out = []
    for centre in (False, True):
        shift = b.mean(0, keepdim=True) if centre else 0
        pred = knn_classify(b - shift, bank[1], q - shift, k, T,
                            num_classes=10)
        out.append(float((pred == queries[1]).float().mean() * 100))
    return out


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--official', required=True, help='clone of the dBOT repo')
    p.add_argument('--official-timm', default=None,
                   help='folder to import timm from (the pinned 0.4.12)')
    p.add_argument('--data-root', required=True)
    p.add_argument('--num-train', type=int, default=None)
    p.add_argument('--num-val', type=int, default=None)
    p.add_argument('--knn-bank', type=int, default=2000,
                   help='first N train images are the kNN bank')
    p.add_argument('--img', type=int, default=32)
    p.add_argument('--patch', type=int, default=4)
    p.add_argument('--dims', type=int, default=128)
    p.add_argument('--depth', type=int, default=4)
    p.add_argument('--heads', type=int, default=4)
    p.add_argument('--dec-dims', type=int, default=96)
    p.add_argument('--dec-depth', type=int, default=2)
    p.add_argument('--dec-heads', type=int, default=3)
    p.add_argument('--stage-epochs', type=int, nargs='+', default=[0, 4],
                   help='official --stage_epochs, e.g. 0 8 16')
    p.add_argument('--warmup', type=int, default=1)
    p.add_argument('--blr', type=float, default=1.5e-3)
    p.add_argument('--batch', type=int, default=128)
    p.add_argument('--mask-ratio', type=float, default=0.75)
    p.add_argument('--clip-grad', type=float, default=3.0)
    p.add_argument('--weight-decay', type=float, default=0.05)
    p.add_argument('--crop-scale', type=float, nargs=2, default=(0.5, 1.0))
    p.add_argument('--mean', type=float, default=55.9)
    p.add_argument('--std', type=float, default=84.9)
    p.add_argument('--no-norm-target', action='store_true',
                   help='drop --norm_feature_loss')
    p.add_argument('--knn-every', type=float, default=0.5,
                   help='epochs between kNN evaluations (and every stage end)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--threads', type=int, default=None)
    p.add_argument('--out', required=True, help='JSON file for the curve')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    models_mae, misc, timm = import_official(args.official,
                                             args.official_timm)
    sys.path.insert(0, args.official)
    import util.lr_sched as lr_sched  # noqa: E402  (the clone's)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)

    train = read_folder(args.data_root, 'train', args.num_train)
    val = read_folder(args.data_root, 'val', args.num_val)
    bank = (train[0][:args.knn_bank], train[1][:args.knn_bank])
    loader = torch.utils.data.DataLoader(
        Augmented(train[0], args.img, tuple(args.crop_scale), args.mean,
                  args.std),
        batch_size=args.batch, shuffle=True, drop_last=True, num_workers=0)

    make = partial(models_mae.MaskedAutoencoderViT, img_size=args.img,
                   patch_size=args.patch, embed_dim=args.dims,
                   num_heads=args.heads, mlp_ratio=4,
                   norm_layer=partial(nn.LayerNorm, eps=1e-6),
                   decoder_embed_dim=args.dec_dims,
                   decoder_depth=args.dec_depth,
                   decoder_num_heads=args.dec_heads)

    def new_teacher(student):
        teacher = make(depth=args.depth, decoder_depth=0)
        teacher.load_state_dict(student.state_dict(), strict=False)
        for p in teacher.parameters():
            p.requires_grad = False
        return teacher  # the official loop never calls .eval(): no dropout

    model = make(depth=args.depth,
                 norm_feature_loss=not args.no_norm_target)
    teacher = new_teacher(model)
    lr = args.blr * args.batch / 256
    opt_args = argparse.Namespace(
        lr=lr, min_lr=0., warmup_epochs=args.warmup,
        stage_epochs=args.stage_epochs, epochs=args.stage_epochs[-1])
    import importlib
    factory = importlib.import_module('timm.optim.optim_factory')
    # main_pretrain.py: timm's add_weight_decay (renamed in timm 1.x)
    param_groups = getattr(factory, 'add_weight_decay', None) or getattr(
        factory, 'param_groups_weight_decay')
    param_groups = param_groups(model, args.weight_decay)
    optimizer = torch.optim.AdamW(param_groups, lr=lr, betas=(0.9, 0.95))
    scaler = misc.NativeScalerWithGradNormCount()
    mean, std = args.mean, args.std

    steps = len(loader)
    every = max(1, round(args.knn_every * steps))
    raw, centred = knn(model, bank, val, mean, std)
    curve = [[0.0, raw, None, centred]]  # epoch, kNN, loss, centred kNN
    print(f'epoch 0.00: kNN {raw:.2f} / centred {centred:.2f} (random '
          'init)', flush=True)
    t0 = time.time()
    for epoch in range(args.stage_epochs[-1]):
        model.train(True)
        for it, (x, _) in enumerate(loader):
            lr_sched.adjust_learning_rate(optimizer, it / steps + epoch,
                                          opt_args)
            loss, _, _ = model(x, teacher=teacher,
                               mask_ratio=args.mask_ratio, tlayernorm=0)
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f'loss {loss.item()}')
            scaler(loss, optimizer, clip_grad=args.clip_grad,
                   parameters=model.parameters(), update_grad=True)
            optimizer.zero_grad()
            done = epoch * steps + it + 1
            stage_end = (it + 1 == steps
                         and epoch + 1 in args.stage_epochs)
            if done % every == 0 or stage_end:
                top1, centred = knn(model, bank, val, mean, std)
                curve.append([done / steps, top1, loss.item(), centred])
                print(f'epoch {done / steps:.2f}: kNN {top1:.2f} / centred '
                      f'{centred:.2f} loss '
                      f'{loss.item():.4f} ({time.time() - t0:.0f} s)',
                      flush=True)
        if epoch + 1 in args.stage_epochs and \
                epoch + 1 != args.stage_epochs[-1]:
            teacher = new_teacher(model)  # main_pretrain.py's boundary
            model.initialize_weights()
    with open(args.out, 'w') as f:
        json.dump(dict(args=vars(args), curve=curve,
                       train_seconds=round(time.time() - t0, 1)), f)


if __name__ == '__main__':
    main()
