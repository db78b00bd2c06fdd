"""Normalised singular-value spectrum of a ViT's token features: a PNG
(log scale) and a CSV, for the last block or every block.

    python tools/analysis/singular_values.py \
        configs/pretrain/dbot_demo_fashion-mnist.py \
        work_dirs/dbot_demo_fashion-mnist/epoch_15.pth \
        --data-root data/fashion_mnist --ann-file meta/val.txt \
        --data-prefix val --layers all --out work_dirs/analysis

Features are the block outputs (before the final LayerNorm) of every patch
token of the images, stacked, centred per channel; singular values are
divided by the largest and sorted.
"""
import argparse
import json
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))

from dbot_mm.analysis.cli import (add_model_and_image_args,  # noqa: E402
                                  model_and_images)
from dbot_mm.analysis.singular_values import (  # noqa: E402
    TOKEN_MODES, effective_rank, normalized_singular_values,
    plot_singular_values, token_features, write_singular_values_csv)


def _layers(text):
    if text in ('last', 'all'):
        return text
    return [int(i) - 1 for i in text.split(',')]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    add_model_and_image_args(p)
    p.add_argument('--layers', type=_layers, default='last',
                   help='"last", "all" or 1-based block numbers "1,6"')
    p.add_argument('--tokens', choices=TOKEN_MODES, default='patch',
                   help='patch: every patch token; all: with cls; mean: '
                   'mean patch token per image; cls: the cls token')
    p.add_argument('--no-center', action='store_true',
                   help='do not subtract the mean feature first')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    model, images, info = model_and_images(args)
    feats = token_features(model, images, args.layers, args.tokens,
                           args.batch_size)
    spectra = {
        layer: normalized_singular_values(f, center=not args.no_center
                                          ).numpy()
        for layer, f in feats.items()
    }
    os.makedirs(args.out, exist_ok=True)
    csv_path = write_singular_values_csv(
        {args.name: spectra}, osp.join(args.out, 'singular_values.csv'))
    png_path = plot_singular_values(
        {args.name: spectra}, osp.join(args.out, 'singular_values.png'),
        title=f'{args.name}: {info["num_images"]} images, '
        f'{args.tokens} tokens')
    summary = {}
    for layer, s in spectra.items():
        erank = effective_rank(s)
        summary[f'block_{layer + 1}'] = dict(
            rows=int(feats[layer].shape[0]), effective_rank=round(erank, 2),
            values_above_1e_3=int((s > 1e-3).sum()))
        print(f'block {layer + 1}: {feats[layer].shape[0]} x '
              f'{feats[layer].shape[1]} features, effective rank '
              f'{erank:.1f}, {int((s > 1e-3).sum())} values > 1e-3')
    with open(osp.join(args.out, 'singular_values.json'), 'w') as f:
        json.dump(dict(name=args.name, checkpoint=args.checkpoint,
                       component=info['component'],
                       num_images=info['num_images'], tokens=args.tokens,
                       centered=not args.no_center, blocks=summary), f,
                  indent=1)
    print(f'wrote {png_path} and {csv_path}')


if __name__ == '__main__':
    main()
