"""Command-line inputs shared by ``tools/analysis/*``: which model, which
images, and how to normalise them."""
import argparse
import os.path as osp
from typing import Tuple

import torch

from .images import (image_paths, load_images, normalisation_from_config)
from .vit_loading import COMPONENTS, load_vit

__all__ = ['add_model_and_image_args', 'model_and_images']


def add_model_and_image_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        'config_or_arch',
        help='config file (arch, patch, image size and normalisation come '
        'from model.<component>), an mmpretrain arch name (b, l, '
        'deit-tiny, ...) or "auto" (inferred from the weights)')
    p.add_argument('checkpoint', help='dbot_mm / mmpretrain checkpoint, '
                   'published or converted backbone file')
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument('--images', help='folder searched recursively')
    src.add_argument('--data-root',
                     help='mmpretrain CustomDataset root, with --ann-file '
                     'and --data-prefix (e.g. data/fashion_mnist, '
                     'meta/val.txt, val)')
    p.add_argument('--ann-file', default='')
    p.add_argument('--data-prefix', default='')
    p.add_argument('--num-images', type=int, default=256,
                   help='images used, evenly spread over the sorted list')
    p.add_argument('--component', choices=COMPONENTS, default='auto',
                   help='backbone (student), teacher, none (the file is the '
                   'encoder) or auto: backbone.* if present, else teacher.*,'
                   ' else the whole file')
    p.add_argument('--img-size', type=int, default=None,
                   help='input size (default: the one the checkpoint was '
                   'trained at)')
    p.add_argument('--num-heads', type=int, default=None,
                   help='head count when it cannot be inferred (non-standard'
                   ' widths without a config)')
    p.add_argument('--mean', type=float, nargs=3, default=None)
    p.add_argument('--std', type=float, nargs=3, default=None)
    p.add_argument('--to-rgb', choices=['yes', 'no'], default=None,
                   help='flip BGR to RGB before normalising (default: as '
                   "the config's data preprocessor, else yes)")
    p.add_argument('--batch-size', type=int, default=64)
    p.add_argument('--name', default=None,
                   help='label in the CSV and plot (default: checkpoint '
                   'file name + component)')
    p.add_argument('--out', required=True, help='output folder')


def model_and_images(args) -> Tuple[torch.nn.Module, torch.Tensor, dict]:
    """Model (eval), normalised images and the loader's info dict."""
    model, info = load_vit(args.checkpoint, args.config_or_arch,
                           args.component, args.img_size, args.num_heads)
    mean, std, to_rgb = normalisation_from_config(info['config'])
    mean = args.mean or mean
    std = args.std or std
    if args.to_rgb is not None:
        to_rgb = args.to_rgb == 'yes'
    size = info['img_size']
    size = (size, size) if isinstance(size, int) else tuple(size)
    paths = image_paths(args.images, args.data_root, args.ann_file,
                        args.data_prefix, args.num_images)
    images = load_images(paths, size, mean, std, to_rgb)
    if args.name is None:
        args.name = (osp.splitext(osp.basename(args.checkpoint))[0] + ':' +
                     info['component'])
    info.update(num_images=len(paths), mean=list(mean), std=list(std),
                to_rgb=to_rgb)
    return model, images, info
