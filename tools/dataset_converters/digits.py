"""Write scikit-learn's handwritten digits as PNG folders with mmpretrain
annotation files (a kNN bank in ``train/``, queries in ``val/``).

Example::

    python tools/dataset_converters/digits.py --out data/digits
"""
import argparse

from dbot_mm.datasets.digits import convert_digits


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--out', required=True, help='output folder')
    p.add_argument('--num-train', type=int, default=1000,
                   help='class-balanced bank size; the rest of the 1797 '
                   'images are the queries')
    p.add_argument('--size', type=int, default=28,
                   help='upsample the 8x8 scans to this size (bicubic)')
    p.add_argument('--pad-to', type=int, default=32)
    p.add_argument('--force', action='store_true')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    counts = convert_digits(args.out, num_train=args.num_train,
                            size=args.size, pad_to=args.pad_to,
                            force=args.force)
    print(f'{args.out}: {counts["train"]} train / {counts["val"]} val '
          f'images; annotation files in {args.out}/meta')


if __name__ == '__main__':
    main()
