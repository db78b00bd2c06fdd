"""Per-epoch reseeding, so that a resumed run repeats an uninterrupted one."""
import random

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.registry import FUNCTIONS
from mmpretrain.registry import HOOKS


def epoch_seed(seed: int, epoch: int) -> int:
    """A 32-bit seed mixed from the run's seed and the epoch."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


@FUNCTIONS.register_module()
def torch_worker_seed(worker_id: int) -> None:
    """Dataloader ``worker_init_fn`` that keeps PyTorch's own worker seeding.

    PyTorch seeds ``random``, numpy and torch in each worker from a base seed
    drawn from the main process's RNG when an epoch's iterator starts; with
    :class:`EpochSeedHook` that differs per epoch and rank and replays on
    resume. mmengine's default ``worker_init_fn`` (used whenever
    ``randomness.seed`` is set) would reseed every epoch's workers with the
    same constants instead, repeating the augmentation streams each epoch.
    """


@HOOKS.register_module()
class EpochSeedHook(Hook):
    """Reseed ``random``, numpy and torch (CPU and CUDA) at every epoch start.

    mmengine does not save RNG states, so after ``--resume`` the masking noise,
    the augmentations and the dataloader worker seeds would follow another
    stream than the uninterrupted run. Instead of carrying the states of every
    rank in the checkpoint, the global RNGs are set to a function of
    ``(runner.seed, epoch)`` before each epoch's first batch is drawn: an
    epoch replays identically whatever ran before it (validation, kNN
    monitoring, model building on resume), on every rank without any
    gathering. ``runner.seed`` includes the rank when
    ``randomness.diff_rank_seed`` is set, and is restored from the checkpoint
    on resume. mmengine resumes at epoch boundaries, which is where this
    acts; set ``randomness.seed`` so that the sampler order also repeats.
    """

    priority = 'VERY_HIGH'

    def before_train_epoch(self, runner) -> None:
        seed = epoch_seed(runner.seed, runner.epoch)
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)  # also seeds every CUDA device
