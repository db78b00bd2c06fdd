"""Code in a checkpoint never runs, whichever door it comes through.

Four payloads, each of which creates a marker file when it is executed: a
pickle in torch's zip format, in torch's legacy format and as a raw pickle
(``os.system``), and a TorchScript archive whose ``__setstate__`` writes a
file with ``torch.save`` (``torch.jit.load`` runs it). Each goes through
every loader (mmengine's load path for ``load_from`` / ``--resume`` /
``Pretrained``, ``PretrainedTeacher``, the config check, the transfer loader,
the analysis loader, publishing, the converters' ``load_source``) and every
CLI; the marker must never appear, and a CLI refusal is one line.
"""
import os
import os.path as osp
import pickle
import subprocess
import sys
from typing import Tuple

import pytest
import torch

import dbot_mm  # noqa: F401
from dbot_mm.utils import CheckpointFormatError, UnsafeCheckpointError
from dbot_mm.utils.safe_load import TRUSTED_ENV
from rel_helpers import ROOT, _env, make_image_folder, write_config

PAYLOADS = ('zip', 'legacy', 'raw', 'torchscript')


class _System:

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


class _ScriptedPayload(torch.nn.Module):
    """Scripted; loading the archive calls ``__setstate__``, which writes
    ``marker``."""

    def __init__(self, marker: str):
        super().__init__()
        self.marker = marker

    def forward(self, x):
        return x * 2

    @torch.jit.export
    def __getstate__(self) -> Tuple[str, bool]:
        return (self.marker, self.training)

    @torch.jit.export
    def __setstate__(self, state: Tuple[str, bool]) -> None:
        self.marker = state[0]
        self.training = state[1]
        torch.save(torch.ones(1), state[0])


def make_payload(kind, path, marker):
    if kind == 'torchscript':
        torch.jit.script(_ScriptedPayload(str(marker))).save(str(path))
        return str(path)
    obj = {'state_dict': {'backbone.w': torch.ones(1)},
           'meta': _System(marker)}
    if kind == 'zip':
        torch.save(obj, path)
    elif kind == 'legacy':
        torch.save(obj, path, _use_new_zipfile_serialization=False)
    else:
        with open(path, 'wb') as f:
            pickle.dump(obj, f)
    return str(path)


@pytest.fixture(params=PAYLOADS)
def payload(request, tmp_path):
    marker = tmp_path / 'marker'
    path = make_payload(request.param, tmp_path / f'{request.param}.pth',
                        marker)
    yield request.param, path, marker
    assert not marker.exists(), f'{request.param} payload was executed'


def test_payloads_really_run_when_loaded_unsafely(tmp_path):
    """The payloads are real: a full load executes each of them."""
    for kind in PAYLOADS:
        marker = tmp_path / f'{kind}.marker'
        path = make_payload(kind, tmp_path / f'{kind}.pth', marker)
        if kind == 'torchscript':
            torch.jit.load(path)
        elif kind == 'raw':
            with open(path, 'rb') as f:
                pickle.load(f)
        else:
            torch.load(path, weights_only=False)
        assert marker.exists(), kind


def _refused(call):
    with pytest.raises((UnsafeCheckpointError, CheckpointFormatError)) as e:
        call()
    return str(e.value)


def test_safe_load_and_mmengine_loader(payload):
    from mmengine.runner.checkpoint import _load_checkpoint

    from dbot_mm.utils import safe_load
    kind, path, _ = payload
    msg = _refused(lambda: safe_load(path))
    assert path in msg and 'Nothing in it was executed' in msg
    if kind == 'torchscript':
        assert 'TorchScript archive' in msg
    else:
        assert 'system' in msg  # the offending global is named
    _refused(lambda: _load_checkpoint(path))  # load_from, resume, init_cfg


def test_teacher_transfer_analysis_publish_and_check(payload, tmp_path):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS

    from dbot_mm.analysis.vit_loading import load_vit
    from dbot_mm.models.converters import publish_backbone
    from dbot_mm.utils.ckpt_load import load_pretrained
    from dbot_mm.utils.config_checks import check_pretrained_checkpoints
    _, path, _ = payload
    init_default_scope('mmpretrain')
    teacher = MODELS.build(dict(
        type='PretrainedTeacher', checkpoint=path, img_size=16, patch_size=4,
        arch=dict(embed_dims=32, num_layers=1, num_heads=2,
                  feedforward_channels=64)))
    _refused(teacher.init_weights)
    _refused(lambda: load_pretrained(torch.nn.Linear(1, 1), path))
    _refused(lambda: load_vit(path))
    _refused(lambda: publish_backbone(path, str(tmp_path / 'out.pth')))
    check_pretrained_checkpoints(Config(dict(model=dict(teacher=dict(
        type='PretrainedTeacher', checkpoint=path)))))  # the loader reports


def test_converter_load_source(payload):
    from dbot_mm.models.converters import load_source
    kind, path, _ = payload
    msg = _refused(lambda: load_source(path))
    if kind == 'torchscript':
        assert 'own __setstate__' in msg and TRUSTED_ENV in msg


def test_trusted_torchscript_is_loaded_by_opt_in_only(tmp_path, monkeypatch):
    """The opt-in works (and does run the archive: it is a program)."""
    from dbot_mm.models.converters import load_source
    marker = tmp_path / 'marker'
    path = make_payload('torchscript', tmp_path / 'ts.pt', marker)
    with pytest.raises(UnsafeCheckpointError):
        load_source(path)
    assert not marker.exists()
    monkeypatch.setenv(TRUSTED_ENV, path)
    load_source(path)
    assert marker.exists()


class _Tower(torch.nn.Module):

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 8, 4, 4, bias=False)
        self.blocks = torch.nn.Sequential(torch.nn.LayerNorm(8),
                                          torch.nn.Linear(8, 8))
        self.register_buffer('scale', torch.arange(3.))
        self.attn_mask = None

    def forward(self, x):
        return self.blocks(self.conv1(x).flatten(2).transpose(1, 2))


@pytest.mark.filterwarnings('ignore::FutureWarning')
@pytest.mark.parametrize('dtype', [torch.float32, torch.float16])
def test_torchscript_weights_read_without_running(tmp_path, dtype):
    """A benign archive (traced, as OpenAI's CLIP files; fp16 as theirs):
    every tensor of its state dict, bit for bit, without torch.jit.load."""
    from dbot_mm.models.converters import load_source
    module = torch.jit.trace(_Tower().to(dtype), torch.randn(1, 3, 8, 8,
                                                             dtype=dtype))
    path = str(tmp_path / 'tower.pt')
    module.save(path)
    ref = module.state_dict()
    got = load_source(path)
    assert sorted(got) == sorted(ref)
    for k in ref:
        assert got[k].dtype == ref[k].dtype and torch.equal(got[k], ref[k])


def test_non_checkpoints_are_not_called_unsafe(tmp_path):
    """A text file, random bytes, an empty file and a truncated checkpoint
    are format errors, not 'unsafe' (no advice to trust them)."""
    from mmengine.runner.checkpoint import _load_checkpoint
    files = {'text.pth': b'hello\n', 'random.bin': os.urandom(256),
             'empty.pth': b''}
    torch.save({'w': torch.randn(100)}, tmp_path / 'full.pth')
    data = (tmp_path / 'full.pth').read_bytes()
    files['truncated.pth'] = data[:len(data) // 2]
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(CheckpointFormatError) as e:
            _load_checkpoint(str(tmp_path / name))
        assert str(tmp_path / name) in str(e.value)
        assert TRUSTED_ENV not in str(e.value)


# ---- the command lines: one line, nothing executed -------------------------
def _cli(*args):
    # library import warnings (pkg_resources, ...) are not ours to count
    result = subprocess.run([sys.executable, *args], cwd=ROOT,
                            env=_env(dict(PYTHONWARNINGS='ignore')),
                            capture_output=True, text=True, timeout=300)
    return result.returncode, result.stdout + result.stderr


CLS = 'vit-base-p16_dbot-ft_8xb128-coslr-100e_in1k.py'
CONVERTERS = {
    'zip': ('dbot_official_to_mm.py', ),
    'legacy': ('vit_finetuned_to_mmpretrain.py', ),
    'raw': ('publish_model.py', ),
    'torchscript': ('clip_to_dbot_teacher.py', ),
}


def test_cli_refusals_are_one_line(payload, tmp_path):
    """Each payload through a converter CLI; the zip one through train.py
    as --resume, the TorchScript one as load_from, the legacy one through
    test.py."""
    kind, path, _ = payload
    tool = osp.join('tools', 'model_converters', CONVERTERS[kind][0])
    rc, out = _cli(tool, path, str(tmp_path / 'out.pth'))
    lines = out.strip().splitlines()
    assert rc == 1 and len(lines) == 1, out
    assert lines[0].startswith(f'{CONVERTERS[kind][0]}: error: ') and \
        path in lines[0]
    assert not (tmp_path / 'out.pth').exists()

    if kind == 'legacy':  # tools/test.py CONFIG CHECKPOINT
        rc, out = _cli('tools/test.py', osp.join('configs', 'cls', CLS), path)
        lines = out.strip().splitlines()
        assert rc == 1 and len(lines) == 1, out
        assert lines[0].startswith('test.py: error: ') and path in lines[0]
    train_option = {'zip': ['--resume', path],
                    'torchscript': ['--cfg-options', f'load_from={path}']}
    if kind in train_option:
        data = make_image_folder(str(tmp_path / 'data'), n=8)
        cfg = write_config(str(tmp_path / 'cfg.py'), data, stages=(0, 1, 2),
                           warmup=0)
        rc, out = _cli('tools/train.py', cfg, '--work-dir',
                       str(tmp_path / 'w'), *train_option[kind])
        lines = out.strip().splitlines()
        assert rc == 1 and len(lines) == 1, out  # before any Runner output
        assert lines[0].startswith('train.py: error: ') and path in lines[0]
