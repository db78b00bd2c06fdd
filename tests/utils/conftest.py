import pytest
import torch
import torch.nn as nn
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import Dataset


class ToyModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, x, mode='loss'):
        x = torch.stack(x) if isinstance(x, list) else x
        out = self.linear(x)
        return dict(loss=out.pow(2).mean()) if mode == 'loss' else out


class ToyData(Dataset):

    def __len__(self):
        return 8

    def __getitem__(self, i):
        return dict(x=torch.full((2, ), float(i)))


def _make_runner(work_dir, max_epochs, resume=False):
    return Runner(
        model=ToyModel(),
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=ToyData(),
            sampler=dict(type='DefaultSampler', shuffle=True),
            batch_size=4,
            num_workers=0),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=0.01)),
        param_scheduler=dict(type='LinearLR', start_factor=0.1, by_epoch=True,
                             begin=0, end=2),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1),
                           logger=dict(type='LoggerHook', interval=1)),
        randomness=dict(seed=0),
        resume=resume,
        default_scope='mmengine')


@pytest.fixture
def make_runner():
    """A tiny mmengine Runner that writes real checkpoints."""
    return _make_runner
