"""Official dBOT / MAE pre-training checkpoint -> dbot_mm checkpoint.

    # student + decoder + teacher -> dbot_mm pretrain checkpoint
    python tools/model_converters/dbot_official_to_mm.py \
        output/checkpoint-1600.pth work_dirs/dbot_vitb_official.pth \
        --teacher output/checkpoint-teacher-1600.pth
    # released pt. model -> backbone-only file for cls / det / seg / teachers
    python tools/model_converters/dbot_official_to_mm.py \
        84.5_dbot_base_pre.pth checkpoints/dbot_vitb_backbone.pth \
        --backbone-only
    # official SdAE checkpoint (student + EMA teacher in one file)
    python tools/model_converters/dbot_official_to_mm.py \
        output_dir/checkpoint-299.pth work_dirs/sdae_vitb_official.pth

An SdAE file is recognised by its ``model_teacher`` entry: the teacher is
converted for ``EMATeacher`` (``configs/pretrain/sdae_vitb.py``), final norm
kept.

CLIP-teacher releases (official ``beit`` branch: relative position bias,
layer scale) are detected and converted for ``ViTDense`` with
``--backbone-only``; the printed config lists the flags they need.
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(
    __file__)))))

import torch  # noqa: E402

from dbot_mm.models.converters import (convert_beit,  # noqa: E402
                                       convert_official_pretrain,
                                       extract_state_dict, is_beit_layout,
                                       load_source, save_checkpoint)
from dbot_mm.models.converters.common import (  # noqa: E402
    CLI_ERRORS, converter_parser, summary)
from dbot_mm.utils.cli import run_cli  # noqa: E402


def parse_args(argv=None):
    parser = converter_parser(__doc__, 'official checkpoint-*.pth or release')
    parser.add_argument('--teacher', help='official checkpoint-teacher-*.pth')
    parser.add_argument('--backbone-only', action='store_true',
                        help='keep only backbone.* (cls/det/seg, teachers)')
    parser.add_argument('--num-heads', type=int,
                        help='encoder heads for a non-standard width')
    parser.add_argument('--teacher-num-layers', type=int,
                        help='teacher arch.num_layers (default: max of the '
                        'teacher file and student depth)')
    parser.add_argument('--stage', type=int,
                        help='stages already finished (the DBOT `stage` '
                        'buffer), for continuing a run')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    source = load_source(args.src)
    student = extract_state_dict(source)
    teacher = None
    # SdAE saves its EMA teacher next to the student (util/misc.save_model)
    sdae = isinstance(source, dict) and 'model_teacher' in source
    if args.teacher and sdae:
        raise SystemExit(f'{args.src} is an SdAE checkpoint with its own '
                         'teacher ("model_teacher"); drop --teacher')
    if sdae and not args.backbone_only:
        teacher = extract_state_dict(source['model_teacher'])
    elif args.teacher and not args.backbone_only:
        teacher = extract_state_dict(load_source(args.teacher))
    if is_beit_layout(student):
        if not args.backbone_only:
            raise SystemExit(
                f'{args.src} is a BEiT-layout (CLIP-teacher, symmetric) '
                'checkpoint; dbot_mm has no symmetric pre-training model to '
                'continue it. Use --backbone-only for cls / det / seg.')
        state, report, cfg = convert_beit(student, num_heads=args.num_heads)
    else:
        state, report, cfg = convert_official_pretrain(
            student, teacher, backbone_only=args.backbone_only,
            num_heads=args.num_heads,
            teacher_num_layers=args.teacher_num_layers, ema_teacher=sdae)
    if args.stage is not None and not args.backbone_only:
        state['stage'] = torch.tensor(args.stage, dtype=torch.long)
    meta = dict(dbot_mm=dict(
        converter='dbot_official_to_mm', source=osp.basename(args.src),
        model_cfg=cfg))
    save_checkpoint(state, args.dst, meta)
    print(summary(report, cfg, args.dst))


if __name__ == '__main__':
    run_cli(main, __file__, CLI_ERRORS)
