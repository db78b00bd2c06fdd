
from .dbot_vit import DBOTViT  # noqa: F401
