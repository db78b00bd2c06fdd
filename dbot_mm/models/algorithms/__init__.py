from .dbot import DBOT

__all__ = ['DBOT']
