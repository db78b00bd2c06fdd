from . import hooks, optimizers, schedules  # noqa: F401
