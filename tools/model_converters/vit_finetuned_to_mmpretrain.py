"""Official fine-tuned ViT (dBOT / MAE / DeiT, timm layout) -> mmpretrain
``ImageClassifier`` checkpoint.

CLIP-teacher rows (official ``beit`` branch, BEiT layout) are detected and
converted for ``ViTDense`` with relative position bias and layer scale.

    python tools/model_converters/vit_finetuned_to_mmpretrain.py \
        84.5_dbot_base_finetune.pth checkpoints/dbot_vitb_in1k.pth
    python tools/test.py \
        configs/cls/vit-base-p16_dbot-ft_8xb128-coslr-100e_in1k.py \
        checkpoints/dbot_vitb_in1k.pth
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(
    __file__)))))

from dbot_mm.models.converters import (convert_beit,  # noqa: E402
                                       convert_official_finetuned,
                                       extract_state_dict, is_beit_layout,
                                       load_source, save_checkpoint)
from dbot_mm.models.converters.common import (  # noqa: E402
    CLI_ERRORS, converter_parser, summary)
from dbot_mm.utils.cli import run_cli  # noqa: E402


def parse_args(argv=None):
    parser = converter_parser(__doc__, 'official fine-tuned checkpoint')
    parser.add_argument('--num-heads', type=int,
                        help='encoder heads for a non-standard width')
    parser.add_argument('--head', default='LinearClsHead',
                        choices=['LinearClsHead', 'VisionTransformerClsHead'],
                        help='head of the target config (default: '
                        'LinearClsHead, as configs/cls/*dbot-ft*)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    src = extract_state_dict(load_source(args.src))
    convert = convert_beit if is_beit_layout(src) \
        else convert_official_finetuned
    state, report, cfg = convert(src, num_heads=args.num_heads,
                                 head_type=args.head)
    meta = dict(dbot_mm=dict(
        converter='vit_finetuned_to_mmpretrain',
        source=osp.basename(args.src), model_cfg=cfg))
    save_checkpoint(state, args.dst, meta)
    print(summary(report, cfg, args.dst))


if __name__ == '__main__':
    run_cli(main, __file__, CLI_ERRORS)
