"""Checkpoint loading on torch >= 2.6: mmengine checkpoints resume, code in a
pickle never runs, trusted files can opt in."""
import os
import pickle
import sys

import numpy as np
import pytest
import torch
from mmengine.runner.checkpoint import _load_checkpoint

import dbot_mm  # noqa: F401  (applies the fix)
from dbot_mm.utils import (UnsafeCheckpointError, safe_load,
                           trust_checkpoint, trusted_checkpoints)
from dbot_mm.utils.safe_load import TRUSTED_ENV


class Payload:
    """Pickles into ``os.system(<command>)``: the classic exploit."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


def test_runner_checkpoint_resumes_on_new_torch(tmp_path, make_runner):
    assert tuple(int(v) for v in torch.__version__.split('.')[:2]) >= (2, 6)
    make_runner(tmp_path, max_epochs=1).train()
    ckpt = tmp_path / 'epoch_1.pth'
    raw = torch.load(ckpt, weights_only=False)
    assert 'message_hub' in raw  # holds HistoryBuffer objects
    with pytest.raises(pickle.UnpicklingError):  # what mmengine hits alone
        torch.load(ckpt, weights_only=True)

    runner = make_runner(tmp_path, max_epochs=2, resume=True)
    runner.train()
    assert runner.epoch == 2 and runner.iter == 4
    weights = runner.model.state_dict()['linear.weight']
    assert not torch.equal(weights, raw['state_dict']['linear.weight'])
    loaded = safe_load(ckpt)
    buf = loaded['message_hub']['log_scalars']['train/loss']
    np.testing.assert_allclose(
        buf.mean(), raw['message_hub']['log_scalars']['train/loss'].mean())


def test_malicious_pickle_refused_and_not_run(tmp_path):
    marker = tmp_path / 'pwned'
    ckpt = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'meta': Payload(marker)}, ckpt)
    with pytest.raises(UnsafeCheckpointError) as err:
        _load_checkpoint(str(ckpt))  # the path every mmengine load takes
    assert str(ckpt) in str(err.value)
    assert 'posix.system' in str(err.value) or 'system' in str(err.value)
    assert TRUSTED_ENV in str(err.value)
    assert not marker.exists()

    with pytest.raises(UnsafeCheckpointError):
        safe_load(str(ckpt))
    assert not marker.exists()


def test_getattr_allow_list_is_narrow(tmp_path):
    """A pickle may fetch HistoryBuffer statistics, nothing else."""

    class Sneaky:

        def __reduce__(self):
            return (getattr, (np.ndarray, 'tofile'))

    ckpt = tmp_path / 'sneaky.pth'
    torch.save({'x': Sneaky()}, ckpt)
    with pytest.raises(UnsafeCheckpointError):
        safe_load(str(ckpt))


class Custom:
    """An object outside the allow-list, harmless but unknown."""

    def __init__(self, value=3):
        self.value = value


def test_trusted_opt_in(tmp_path, monkeypatch):
    ckpt = tmp_path / 'custom.pth'
    sys.modules[__name__].Custom = Custom
    torch.save({'obj': Custom(5)}, ckpt)
    with pytest.raises(UnsafeCheckpointError, match='custom.pth'):
        _load_checkpoint(str(ckpt))
    with trusted_checkpoints([ckpt]):
        assert _load_checkpoint(str(ckpt))['obj'].value == 5
    with pytest.raises(UnsafeCheckpointError):
        _load_checkpoint(str(ckpt))  # the context ended
    monkeypatch.setenv(TRUSTED_ENV, str(ckpt))
    assert _load_checkpoint(str(ckpt))['obj'].value == 5
    monkeypatch.delenv(TRUSTED_ENV)
    trust_checkpoint(ckpt)
    assert safe_load(str(ckpt))['obj'].value == 5


def test_no_global_escape_hatch():
    assert 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD' not in os.environ
    assert 'TORCH_FORCE_WEIGHTS_ONLY_LOAD' not in os.environ


def test_numpy_in1d_restored_for_mmpretrain():
    from mmpretrain.evaluation.metrics.retrieval import RetrievalRecall
    np.testing.assert_array_equal(
        np.in1d(np.array([[1, 5], [3, 9]]), [3, 5]),
        [False, True, True, False])
    # mmpretrain's metric calls np.in1d internally
    pred = torch.tensor([[0.9, 0.1, 0.8], [0.1, 0.9, 0.2]])
    target = [torch.tensor([2]), torch.tensor([0])]
    recall = RetrievalRecall.calculate(
        pred, target, topk=(1, 2), target_indices=True)
    assert [float(r) for r in recall] == [0.0, 50.0]
