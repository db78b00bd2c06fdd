from .dbot import DBOT
from .dbot_symmetric import DBOTSymmetric, TokenProjection

__all__ = ['DBOT', 'DBOTSymmetric', 'TokenProjection']
