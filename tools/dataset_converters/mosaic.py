"""Paste real Fashion-MNIST items on larger canvases and write the scenes as
a COCO instance-segmentation set and an ADE20K-layout semantic set.

Example::

    python tools/dataset_converters/mosaic.py --out data/fashion_mosaic \
        --num-train 2000 --num-val 500 --canvas-size 128 --max-occlusion 0.3
"""
import argparse

from dbot_mm.datasets.fashion_mnist import DEFAULT_SRC
from dbot_mm.datasets.mosaic import generate_mosaic


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--src', default=DEFAULT_SRC,
                   help='folder with the four Fashion-MNIST *-ubyte.gz files')
    p.add_argument('--out', required=True,
                   help='output root (gets coco/ and ade/)')
    p.add_argument('--num-train', type=int, default=200)
    p.add_argument('--num-val', type=int, default=50)
    p.add_argument('--canvas-size', type=int, nargs='+', default=[128],
                   help='side, or height width')
    p.add_argument('--objects', type=int, nargs=2, default=[1, 5],
                   metavar=('MIN', 'MAX'), help='items tried per scene')
    p.add_argument('--scale', type=float, nargs=2, default=[1.0, 2.0],
                   metavar=('MIN', 'MAX'), help='item scale, 1.0 = 28 px')
    p.add_argument('--max-occlusion', type=float, default=0.0,
                   help='0: disjoint boxes; else the largest hidden fraction '
                   'of an item')
    p.add_argument('--mask-format', choices=['rle', 'polygon'],
                   default='rle')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--force', action='store_true',
                   help='rewrite even if the same set is complete')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    size = args.canvas_size
    counts = generate_mosaic(
        args.out, src=args.src, num_train=args.num_train,
        num_val=args.num_val,
        canvas_size=size[0] if len(size) == 1 else tuple(size[:2]),
        objects_per_image=tuple(args.objects), scale_range=tuple(args.scale),
        max_occlusion=args.max_occlusion, mask_format=args.mask_format,
        seed=args.seed, force=args.force)
    print(f'{args.out}: {counts["train"]} train scenes '
          f'({counts["train_instances"]} objects), {counts["val"]} val '
          f'scenes ({counts["val_instances"]} objects); coco/ and ade/')


if __name__ == '__main__':
    main()
