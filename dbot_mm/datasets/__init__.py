"""Local data for the demo and tests: Fashion-MNIST folders and mosaics."""
from .digits import DIGITS_CLASSES, convert_digits, read_digits
from .fashion_mnist import (FASHION_MNIST_CLASSES, FashionMNISTError,
                            convert_fashion_mnist, read_fashion_mnist)
from .mosaic import generate_mosaic
from .robust_loading import (CorruptImageError, RobustLoadImageFromFile,
                             skipped_images)

__all__ = [
    'DIGITS_CLASSES', 'convert_digits', 'read_digits',
    'FASHION_MNIST_CLASSES', 'FashionMNISTError', 'convert_fashion_mnist',
    'read_fashion_mnist', 'generate_mosaic', 'CorruptImageError',
    'RobustLoadImageFromFile', 'skipped_images'
]
