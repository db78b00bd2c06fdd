"""dbot_mm training checkpoint -> published backbone ``<name>-<sha8>.pth``.

Keeps ``backbone.*`` (drops decoder, teacher, optimizer, schedulers and
message hub), loadable by mmpretrain / mmdet / mmseg configs with
``init_cfg=dict(type='Pretrained', checkpoint=..., prefix='backbone.')``.

    python tools/model_converters/publish_model.py \
        work_dirs/dbot_vitb/epoch_1600.pth checkpoints/dbot_vitb_1600e.pth
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(
    __file__)))))

from dbot_mm.models.converters import publish_backbone  # noqa: E402
from dbot_mm.models.converters.common import (  # noqa: E402
    CLI_ERRORS, converter_parser)
from dbot_mm.utils.cli import run_cli  # noqa: E402


def parse_args(argv=None):
    parser = converter_parser(
        __doc__, 'dbot_mm checkpoint (epoch_*.pth)',
        'output name; the hash is appended', src='in_file', dst='out_file')
    parser.add_argument('--source', choices=['backbone', 'teacher'],
                        default='backbone',
                        help='publish the student (default) or the teacher')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    path, report = publish_backbone(args.in_file, args.out_file, args.source)
    print(report)
    print(f'published {path}')
    return path


if __name__ == '__main__':
    run_cli(main, __file__, CLI_ERRORS)
