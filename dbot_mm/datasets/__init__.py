"""Local data for the demo and tests: Fashion-MNIST folders and mosaics."""
from .fashion_mnist import (FASHION_MNIST_CLASSES, FashionMNISTError,
                            convert_fashion_mnist, read_fashion_mnist)
from .mosaic import generate_mosaic
from .robust_loading import (CorruptImageError, RobustLoadImageFromFile,
                             skipped_images)

__all__ = [
    'FASHION_MNIST_CLASSES', 'FashionMNISTError', 'convert_fashion_mnist',
    'read_fashion_mnist', 'generate_mosaic', 'CorruptImageError',
    'RobustLoadImageFromFile', 'skipped_images'
]
