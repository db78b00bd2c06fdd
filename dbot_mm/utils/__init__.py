from .safe_load import (UnsafeCheckpointError, safe_load, trust_checkpoint,
                        trusted_checkpoints)

__all__ = [
    'UnsafeCheckpointError', 'safe_load', 'trust_checkpoint',
    'trusted_checkpoints'
]
