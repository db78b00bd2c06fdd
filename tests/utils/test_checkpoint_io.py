"""A crash while writing a checkpoint never costs the previous good one, and
auto-resume never picks a truncated file."""
import os

import pytest
import torch

import dbot_mm  # noqa: F401
from dbot_mm.utils.checkpoint_io import (find_latest_valid_checkpoint,
                                         is_complete_checkpoint)
from mmengine.runner.checkpoint import save_checkpoint


def test_save_is_atomic_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / 'epoch_1.pth'
    save_checkpoint({'w': torch.ones(3)}, str(path))
    good = path.read_bytes()

    class Boom(Exception):
        pass

    import os as os_mod
    real_fsync = os_mod.fsync

    def failing_fsync(fd):  # dies after the bytes hit the temp file
        raise Boom()

    monkeypatch.setattr(os_mod, 'fsync', failing_fsync)
    with pytest.raises(Boom):
        save_checkpoint({'w': torch.zeros(3)}, str(path))
    monkeypatch.setattr(os_mod, 'fsync', real_fsync)
    assert path.read_bytes() == good  # the old file is untouched
    assert sorted(os.listdir(tmp_path)) == ['epoch_1.pth']  # no temp left


def test_truncated_checkpoint_detected(tmp_path):
    path = tmp_path / 'epoch_3.pth'
    save_checkpoint({'w': torch.randn(1000)}, str(path))
    assert is_complete_checkpoint(str(path))
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    assert not is_complete_checkpoint(str(path))
    assert not is_complete_checkpoint(str(tmp_path / 'missing.pth'))


def test_auto_resume_skips_truncated_checkpoint(tmp_path, make_runner):
    make_runner(tmp_path, max_epochs=2).train()
    last = tmp_path / 'epoch_2.pth'
    assert (tmp_path / 'last_checkpoint').read_text().strip() == str(last)
    data = last.read_bytes()
    last.write_bytes(data[:len(data) // 3])  # killed mid-write (old mmengine)

    assert find_latest_valid_checkpoint(str(tmp_path)) == str(
        tmp_path / 'epoch_1.pth')
    runner = make_runner(tmp_path, max_epochs=2, resume=True)
    runner.train()  # resumes from epoch 1 and re-trains epoch 2
    assert runner.epoch == 2
    assert is_complete_checkpoint(str(last))


def test_empty_pointer_falls_back_to_newest(tmp_path):
    for i in (1, 2, 10):
        save_checkpoint({'i': i}, str(tmp_path / f'iter_{i}.pth'))
    (tmp_path / 'last_checkpoint').write_text('')
    assert find_latest_valid_checkpoint(str(tmp_path)) == str(
        tmp_path / 'iter_10.pth')
    assert find_latest_valid_checkpoint(str(tmp_path / 'nothing')) is None
