"""Mean attention distance per block and head of a ViT checkpoint (the
paper's property figure): a PNG (block on x, one dot per head) and a CSV.

    python tools/analysis/attention_distance.py \
        configs/pretrain/dbot_demo_fashion-mnist.py \
        work_dirs/dbot_demo_fashion-mnist/epoch_15.pth \
        --data-root data/fashion_mnist --ann-file meta/val.txt \
        --data-prefix val --num-images 256 --out work_dirs/analysis
    python tools/analysis/attention_distance.py auto published.pth \
        --images data/imagenet/val --out work_dirs/analysis

Distances are in pixels between patch centres; the cls token is left out as
query and key and each query's patch weights are renormalised (pass
``--no-renormalize`` for the raw weights, as most public notebooks).
"""
import argparse
import json
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))

from dbot_mm.analysis.attention_distance import (  # noqa: E402
    attention_distance, plot_attention_distance, uniform_attention_distance,
    write_attention_distance_csv)
from dbot_mm.analysis.cli import (add_model_and_image_args,  # noqa: E402
                                  model_and_images)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    add_model_and_image_args(p)
    p.add_argument('--no-renormalize', action='store_true',
                   help='keep the raw patch weights after dropping the cls '
                   'key instead of renormalising them to sum to one')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    model, images, info = model_and_images(args)
    dist = attention_distance(model, images,
                              renormalize=not args.no_renormalize,
                              batch_size=args.batch_size)
    os.makedirs(args.out, exist_ok=True)
    csv_path = write_attention_distance_csv(
        {args.name: dist}, osp.join(args.out, 'attention_distance.csv'))
    size, patch = info['img_size'], info['patch_size']
    grid = size // patch if isinstance(size, int) else \
        (size[0] // patch, size[1] // patch)
    ref = uniform_attention_distance(grid, patch)
    png_path = plot_attention_distance(
        {args.name: dist}, osp.join(args.out, 'attention_distance.png'),
        title=f'{args.name}: {info["num_images"]} images, patch {patch}',
        max_distance=ref)
    summary = dict(
        name=args.name, checkpoint=args.checkpoint,
        component=info['component'], num_images=info['num_images'],
        patch_size=patch, img_size=size,
        renormalized=not args.no_renormalize,
        uniform_attention_px=ref,
        per_layer_mean_px=[round(float(v), 3) for v in dist.mean(1)])
    with open(osp.join(args.out, 'attention_distance.json'), 'w') as f:
        json.dump(summary, f, indent=1)
    for layer, row in enumerate(dist, 1):
        print(f'block {layer:2d}: mean {row.mean():6.2f} px  heads ' +
              ' '.join(f'{v:5.2f}' for v in row))
    print(f'uniform attention over the grid: {ref:.2f} px')
    print(f'wrote {png_path} and {csv_path}')


if __name__ == '__main__':
    main()
