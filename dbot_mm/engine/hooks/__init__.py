
from .stage_bootstrap_hook import StageBootstrapHook  # noqa: F401
from .epoch_seed_hook import EpochSeedHook  # noqa: F401
from .non_finite_loss_hook import NonFiniteLossHook  # noqa: F401
from .knn_monitor_hook import KNNMonitorHook  # noqa: F401
from .ema_teacher_hook import EMATeacherHook  # noqa: F401
from .curve_plot_hook import CurvePlotHook  # noqa: F401
