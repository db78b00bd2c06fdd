
from .dbot_vit import DBOTViT  # noqa: F401
from .vit_dense import ViTDense  # noqa: F401
from .symmetric_vit import DBOTSymmetricViT  # noqa: F401
