"""Stage boundaries of dBOT: the teacher takes the student's weights and the
student starts again from a fresh initialisation."""
from typing import Optional, Sequence

from mmengine.dist import broadcast_object_list
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapperDict
from mmpretrain.registry import HOOKS

from ..schedules import check_stages

_MODEL_API = ('stage', 'bootstrap_teacher', 'reinit_student', 'teacher_info')


@HOOKS.register_module()
class StageBootstrapHook(Hook):
    """Bootstrap the teacher at every stage boundary, exactly once.

    At the first epoch of stage ``k`` (``k >= 1``) the model's teacher becomes
    a copy of the student encoder as trained so far, running
    ``teacher_depths[k]`` blocks; the student is then redrawn from
    ``seed + k`` (the same on every rank, so DDP replicas stay equal); the
    model's persistent ``stage`` buffer is incremented. That buffer, saved in
    every checkpoint, decides whether a boundary is still due, so resuming
    from the checkpoint written at the boundary epoch bootstraps once, and
    resuming from any later one does not bootstrap again.

    Args:
        stages (Sequence[int]): Stage boundaries in epochs, from 0 to
            ``train_cfg.max_epochs``, e.g. ``[0, 800, 1600]`` (two stages).
        teacher_depths (Sequence[int]): Teacher blocks in each stage, one
            entry per stage. Entry 0 describes the teacher the model is built
            with (official ``init_teacher_encoder_depth``: 12 for ViT-B, 0 for
            ViT-L/H); entry ``k`` is the depth the bootstrapped teacher runs.
            (The official ``--depth 12 12 12`` lists student depths, one per
            boundary including the last; its teacher depths are
            ``[init_teacher_encoder_depth] + depth[:-1]``, used per stage.)
        reinit_student (bool): Redraw every student weight at a boundary, as
            the official code does. Defaults to True.
        reset_optimizer (bool): Clear the optimizer state (AdamW moments) at a
            boundary. The official code keeps it. Defaults to False.
        seed (int, optional): Base seed of the re-initialisation. None uses
            the run's seed (``randomness.seed``, rank 0's value on all ranks).
    """

    priority = 'ABOVE_NORMAL'

    def __init__(self,
                 stages: Sequence[int] = (0, 800, 1600),
                 teacher_depths: Sequence[int] = (12, 12),
                 reinit_student: bool = True,
                 reset_optimizer: bool = False,
                 seed: Optional[int] = None):
        # Shadows mmengine's class attribute Hook.stages, which mmengine
        # only reads from the class.
        self.stages = check_stages(stages, key='stages')
        self.num_stages = len(self.stages) - 1
        teacher_depths = list(teacher_depths)
        if len(teacher_depths) != self.num_stages:
            raise ValueError(
                '`teacher_depths` needs one entry per stage: `stages` '
                f'{self.stages} has {self.num_stages} stages, got '
                f'{len(teacher_depths)} depths {teacher_depths}')
        if any(not isinstance(d, int) or d < 0 for d in teacher_depths):
            raise ValueError('`teacher_depths` must be non-negative integers; '
                             f'got {teacher_depths}')
        self.teacher_depths = teacher_depths
        self.reinit_student = reinit_student
        self.reset_optimizer = reset_optimizer
        self.seed = seed

    def stage_of(self, epoch: int) -> int:
        """Index of the stage (0-based) that ``epoch`` (0-based) belongs to."""
        return sum(1 for boundary in self.stages[1:-1] if boundary <= epoch)

    @staticmethod
    def _unwrap(runner):
        model = runner.model
        return model.module if is_model_wrapper(model) else model

    def check_model(self, model) -> None:
        """The model can run the stages: it has the dBOT API and a teacher
        deep enough for every entry of ``teacher_depths``. Called by
        ``before_train`` and, before the run starts, by ``tools/train.py``
        (so a mistake there is one line, not a traceback from the run)."""
        missing = [name for name in _MODEL_API if not hasattr(model, name)]
        if missing:
            raise TypeError(
                f'StageBootstrapHook needs a dBOT model with {_MODEL_API}; '
                f'{type(model).__name__} lacks {missing}')
        self._check_teacher_depth(model, int(model.stage))

    def before_train(self, runner) -> None:
        """Check the config against the run before any epoch is trained."""
        model = self._unwrap(runner)
        self.check_model(model)
        if self.stages[-1] != runner.max_epochs:
            raise ValueError(
                f'`stages` must end at train_cfg.max_epochs '
                f'({runner.max_epochs}); got {self.stages}')
        if self.seed is None:
            # runner.seed differs per rank with diff_rank_seed; the student
            # must be redrawn identically everywhere.
            seed = [runner.seed]
            broadcast_object_list(seed, src=0)
            self.seed = int(seed[0])

        current, expected = int(model.stage), self.stage_of(runner.epoch)
        if current > expected:
            raise RuntimeError(
                f'The model is in stage {current + 1} (model.stage={current}) '
                f'but epoch {runner.epoch} belongs to stage {expected + 1} of '
                f'`stages` {self.stages}. Was a later-stage checkpoint loaded '
                'with `load_from` instead of `--resume`?')
        runner.logger.info(
            f'dBOT: {self.num_stages} stages {self.stages}, teacher depths '
            f'{self.teacher_depths}; epoch {runner.epoch} starts in stage '
            f'{current + 1}/{self.num_stages}; student re-init seed base '
            f'{self.seed}, optimizer state '
            f'{"reset" if self.reset_optimizer else "kept"} at boundaries.')

    def _check_teacher_depth(self, model, stage: int) -> None:
        """Catch a stage list that disagrees with the teacher the model has,
        now rather than at the first boundary hundreds of epochs in."""
        depth = int(model.teacher_info()['depth'])  # -1: no depth (pixels)
        if depth >= 0 and depth != self.teacher_depths[stage]:
            raise ValueError(
                f'`teacher_depths[{stage}]` is {self.teacher_depths[stage]} '
                f'but the model\'s teacher runs {depth} blocks in stage '
                f'{stage + 1}; set the model\'s teacher depth and the hook\'s '
                '`teacher_depths` alike.')
        teacher = getattr(model, 'teacher', None)
        capacity = getattr(teacher, 'num_layers', None)
        if capacity is not None and max(self.teacher_depths) > int(capacity):
            raise ValueError(
                f'`teacher_depths` {self.teacher_depths} needs a teacher with '
                f'{max(self.teacher_depths)} blocks but the model builds '
                f'{int(capacity)}; raise the teacher\'s arch num_layers.')

    def before_train_epoch(self, runner) -> None:
        model = self._unwrap(runner)
        current, expected = int(model.stage), self.stage_of(runner.epoch)
        if current == expected:
            return
        if expected != current + 1:
            raise RuntimeError(
                f'Epoch {runner.epoch} belongs to stage {expected + 1} but '
                f'the model is in stage {current + 1}: {expected - current} '
                'boundaries would have to be crossed at once.')
        self._bootstrap(runner, model, expected)

    def _bootstrap(self, runner, model, stage: int) -> None:
        depth = self.teacher_depths[stage]
        model.bootstrap_teacher(depth)
        seed = self.seed + stage
        if self.reinit_student:
            model.reinit_student(seed)
        if self.reset_optimizer:
            wrappers = (
                runner.optim_wrapper.values() if isinstance(
                    runner.optim_wrapper, OptimWrapperDict) else
                [runner.optim_wrapper])
            for wrapper in wrappers:
                wrapper.optimizer.state.clear()
        model.stage.fill_(stage)
        info = model.teacher_info()
        student = (f're-initialised (seed {seed})'
                   if self.reinit_student else 'kept')
        optimizer = 'reset' if self.reset_optimizer else 'kept'
        runner.logger.info(
            f'dBOT stage {stage + 1}/{self.num_stages} begins at epoch '
            f'{runner.epoch}: teacher <- student encoder trained in stage '
            f'{stage} ({depth} blocks); student {student}; optimizer state '
            f'{optimizer}; teacher {info}')
