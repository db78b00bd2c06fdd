import os

# Tests run on CPU only, single-threaded BLAS keeps timings stable on 2 cores.
os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')
