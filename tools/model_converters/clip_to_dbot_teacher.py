"""OpenAI CLIP / OpenCLIP image tower -> dbot_mm ``PretrainedTeacher`` file.

    # OpenAI weights (TorchScript .pt), QuickGELU
    python tools/model_converters/clip_to_dbot_teacher.py \
        ~/.cache/clip/ViT-B-16.pt checkpoints/clip-vit-b16_teacher.pth
    # CLIP-L/14 for a /16 student: 196 px input -> the student's 14x14 grid
    python tools/model_converters/clip_to_dbot_teacher.py \
        ~/.cache/clip/ViT-L-14.pt checkpoints/clip-vit-l14_teacher.pth \
        --img-size 196
    # OpenCLIP ViT-B-16 (GELU; use --quick-gelu for *-quickgelu models)
    python tools/model_converters/clip_to_dbot_teacher.py \
        open_clip_pytorch_model.bin checkpoints/openclip-b16_teacher.pth \
        --source openclip
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(
    __file__)))))

from dbot_mm.models.converters import (convert_clip_visual,  # noqa: E402
                                       extract_state_dict, load_source,
                                       save_checkpoint, teacher_meta)
from dbot_mm.models.converters.common import (  # noqa: E402
    CLI_ERRORS, converter_parser, summary)
from dbot_mm.utils.cli import run_cli  # noqa: E402


def parse_args(argv=None):
    parser = converter_parser(__doc__, 'CLIP .pt / .bin / .safetensors')
    parser.add_argument('--source', choices=['openai', 'openclip'],
                        default='openai',
                        help='sets the activation: openai = QuickGELU, '
                        'openclip = GELU (default: openai)')
    parser.add_argument('--quick-gelu', action='store_true',
                        help='OpenCLIP *-quickgelu models')
    parser.add_argument('--keep-proj', action='store_true',
                        help='keep the output projection, as the official '
                        'CLIP teacher and the CLIP configs do')
    parser.add_argument('--no-final-norm', action='store_true',
                        help='targets before ln_post')
    parser.add_argument('--img-size', type=int,
                        help='teacher input size (default: native)')
    parser.add_argument('--num-heads', type=int,
                        help='heads for a non-standard width')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    state, report, cfg = convert_clip_visual(
        extract_state_dict(load_source(args.src)),
        quick_gelu=args.source == 'openai' or args.quick_gelu,
        keep_proj=args.keep_proj,
        final_norm=not args.no_final_norm,
        num_heads=args.num_heads,
        img_size=args.img_size)
    cfg_with_file = dict(cfg, checkpoint=args.dst)
    meta = dict(dbot_mm=dict(
        converter='clip_to_dbot_teacher', source=osp.basename(args.src),
        teacher_cfg=dict(teacher_meta(cfg), config=cfg_with_file)))
    save_checkpoint(state, args.dst, meta)
    print(summary(report, cfg_with_file, args.dst, cfg_name='teacher'))


if __name__ == '__main__':
    run_cli(main, __file__, CLI_ERRORS)
