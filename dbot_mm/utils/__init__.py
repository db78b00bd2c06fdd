from .safe_load import (CheckpointFormatError, UnsafeCheckpointError,
                        safe_load, trust_checkpoint, trusted_checkpoints)

__all__ = [
    'CheckpointFormatError', 'UnsafeCheckpointError', 'safe_load',
    'trust_checkpoint', 'trusted_checkpoints'
]
