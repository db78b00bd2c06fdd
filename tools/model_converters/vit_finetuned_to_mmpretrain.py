"""Official fine-tuned ViT (dBOT / MAE / DeiT, timm layout) -> mmpretrain
``ImageClassifier`` checkpoint.

    python tools/model_converters/vit_finetuned_to_mmpretrain.py \
        84.5_dbot_base_finetune.pth checkpoints/dbot_vitb_in1k.pth
    python tools/test.py configs/cls/<vit-b config>.py \
        checkpoints/dbot_vitb_in1k.pth
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(
    __file__)))))

from dbot_mm.models.converters import (convert_official_finetuned,  # noqa
                                       extract_state_dict, load_source,
                                       save_checkpoint)
from dbot_mm.models.converters.common import summary  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help='official fine-tuned checkpoint')
    parser.add_argument('dst', help='output .pth')
    parser.add_argument('--num-heads', type=int,
                        help='encoder heads for a non-standard width')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    state, report, cfg = convert_official_finetuned(
        extract_state_dict(load_source(args.src)), num_heads=args.num_heads)
    meta = dict(dbot_mm=dict(
        converter='vit_finetuned_to_mmpretrain',
        source=osp.basename(args.src), model_cfg=cfg))
    save_checkpoint(state, args.dst, meta)
    print(summary(report, cfg, args.dst))


if __name__ == '__main__':
    main()
