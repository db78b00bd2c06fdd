from .dbot_decoder import DBOTDecoder

__all__ = ['DBOTDecoder']
