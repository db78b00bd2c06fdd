"""dbot_mm: dBOT (masked knowledge distillation with bootstrapped teachers)
for the OpenMMLab / MMEngine stack.

``pip install -e .`` inside an existing OpenMMLab environment must never pull
a different torch or mmcv, so neither is listed in ``install_requires``; the
fresh-machine installer (tools/install.sh) pins everything instead.
"""
import os.path as osp

from setuptools import find_packages, setup


def read_requirements(path):
    reqs = []
    with open(osp.join(osp.dirname(__file__), path)) as f:
        for line in f:
            line = line.split('#', 1)[0].strip()
            if line:
                reqs.append(line)
    return reqs


def get_version():
    scope = {}
    with open(osp.join(osp.dirname(__file__), 'dbot_mm', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


setup(
    name='dbot_mm',
    version=get_version(),
    description='dBOT masked knowledge distillation for MMEngine / '
    'mmpretrain, with ViT backbones for mmdet and mmseg',
    long_description=open('README.md').read() if osp.exists('README.md')
    else '',
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    packages=find_packages(exclude=('tests', 'tests.*', 'configs', 'tools')),
    python_requires='>=3.8',
    install_requires=read_requirements('requirements/runtime.txt'),
    extras_require={
        'det_seg': read_requirements('requirements/optional.txt'),
        'tests': read_requirements('requirements/tests.txt'),
    },
    classifiers=[
        'Programming Language :: Python :: 3',
        'Topic :: Scientific/Engineering :: Artificial Intelligence',
    ],
    zip_safe=False,
)
