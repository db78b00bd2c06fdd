from . import fsdp, hooks, optimizers, schedules  # noqa: F401
