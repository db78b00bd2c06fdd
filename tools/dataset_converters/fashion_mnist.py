"""Write Fashion-MNIST (Debian's dataset-fashion-mnist) as PNG folders with
mmpretrain annotation files.

Example::

    python tools/dataset_converters/fashion_mnist.py --out data/fashion_mnist \
        --num-train 6000 --num-val 1000 --pad-to 32
"""
import argparse

from dbot_mm.datasets.fashion_mnist import DEFAULT_SRC, convert_fashion_mnist


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--src', default=DEFAULT_SRC,
                   help='folder with the four *-ubyte.gz idx files')
    p.add_argument('--out', required=True, help='output folder')
    p.add_argument('--num-train', type=int, default=None,
                   help='class-balanced train subset (default: all 60000)')
    p.add_argument('--num-val', type=int, default=None,
                   help='class-balanced val subset (default: all 10000)')
    p.add_argument('--pad-to', type=int, default=None,
                   help='zero-pad the 28x28 images to this size, e.g. 32')
    p.add_argument('--seed', type=int, default=None,
                   help='draw the subsets at random with this seed instead '
                   'of taking the first samples of each class')
    p.add_argument('--force', action='store_true',
                   help='rewrite even if the same conversion is complete')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    counts = convert_fashion_mnist(
        args.out, src=args.src, num_train=args.num_train,
        num_val=args.num_val, pad_to=args.pad_to, seed=args.seed,
        force=args.force)
    print(f'{args.out}: {counts["train"]} train / {counts["val"]} val '
          f'images; annotation files in {args.out}/meta')


if __name__ == '__main__':
    main()
