"""Fashion-MNIST folders: real data in, mmpretrain-readable folders out."""
import gzip
import os
import os.path as osp
import struct

import numpy as np
import pytest
from PIL import Image

from dbot_mm.datasets import (FASHION_MNIST_CLASSES, FashionMNISTError,
                              convert_fashion_mnist, read_fashion_mnist)
from dbot_mm.datasets.fashion_mnist import DEFAULT_SRC, balanced_subset

pytestmark = pytest.mark.skipif(
    not osp.isfile(osp.join(DEFAULT_SRC, 'train-images-idx3-ubyte.gz')),
    reason='needs `apt-get install dataset-fashion-mnist`')


@pytest.fixture(scope='module')
def fm_dir(tmp_path_factory):
    out = str(tmp_path_factory.mktemp('fm'))
    counts = convert_fashion_mnist(out, num_train=50, num_val=23, pad_to=32)
    assert counts == dict(train=50, val=23)
    return out


def _read_ann(path):
    with open(path) as f:
        return [line.split() for line in f if line.strip()]


def test_read_validates_and_matches_known_values():
    images, labels = read_fashion_mnist('val')
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000, ) and set(labels.tolist()) == set(range(10))
    assert labels[:3].tolist() == [9, 2, 1]  # t10k starts boot, pullover, ...


def test_layout_counts_balance_and_labels(fm_dir):
    for split, num in (('train', 50), ('val', 23)):
        rows = _read_ann(osp.join(fm_dir, 'meta', f'{split}.txt'))
        assert len(rows) == num
        labels = np.array([int(r[1]) for r in rows])
        assert labels.min() >= 0 and labels.max() <= 9
        per_class = np.bincount(labels, minlength=10)
        assert per_class.max() - per_class.min() <= 1
        for rel, label in rows:
            cls_name, fname = rel.split('/')
            assert cls_name == FASHION_MNIST_CLASSES[int(label)]
            assert osp.isfile(osp.join(fm_dir, split, rel))
    with open(osp.join(fm_dir, 'meta', 'classes.txt')) as f:
        assert tuple(f.read().split()) == FASHION_MNIST_CLASSES


def test_first_n_per_class_and_padding(fm_dir):
    images, labels = read_fashion_mnist('train')
    rows = _read_ann(osp.join(fm_dir, 'meta', 'train.txt'))
    idx = [int(osp.splitext(r[0].split('/')[1])[0]) for r in rows]
    expected = np.concatenate([np.flatnonzero(labels == c)[:5]
                               for c in range(10)])
    assert sorted(idx) == sorted(expected.tolist())
    rel, label = rows[0]
    img = np.asarray(Image.open(osp.join(fm_dir, 'train', rel)))
    assert img.shape == (32, 32)
    np.testing.assert_array_equal(img[2:30, 2:30], images[idx[0]])
    assert not img[:2].any() and not img[30:].any()
    assert not img[:, :2].any() and not img[:, 30:].any()
    assert labels[idx[0]] == int(label)


def test_loads_through_mmpretrain_custom_dataset(fm_dir):
    from mmpretrain.datasets import CustomDataset
    ds = CustomDataset(
        data_root=fm_dir, ann_file='meta/train.txt', data_prefix='train',
        metainfo=dict(classes=osp.join(fm_dir, 'meta', 'classes.txt')),
        pipeline=[dict(type='LoadImageFromFile'), dict(type='PackInputs')])
    assert len(ds) == 50 and tuple(ds.CLASSES) == FASHION_MNIST_CLASSES
    item = ds[7]
    assert tuple(item['inputs'].shape) == (3, 32, 32)  # gray -> 3 channels
    rows = _read_ann(osp.join(fm_dir, 'meta', 'train.txt'))
    assert int(item['data_samples'].gt_label) == int(rows[7][1])
    assert sorted(set(ds.get_gt_labels().tolist())) == list(range(10))


def test_idempotent_and_rebuilt_on_new_args(fm_dir, tmp_path):
    marker = osp.join(fm_dir, '.fashion_mnist_done.json')
    some_png = osp.join(fm_dir, 'train',
                        _read_ann(osp.join(fm_dir, 'meta', 'train.txt'))[0][0])
    stamp = (os.stat(marker).st_mtime_ns, os.stat(some_png).st_mtime_ns)
    assert convert_fashion_mnist(fm_dir, num_train=50, num_val=23,
                                 pad_to=32) == dict(train=50, val=23)
    assert (os.stat(marker).st_mtime_ns,
            os.stat(some_png).st_mtime_ns) == stamp

    out = str(tmp_path / 'fm')
    convert_fashion_mnist(out, num_train=20, num_val=10)
    assert convert_fashion_mnist(out, num_train=10, num_val=10) == dict(
        train=10, val=10)
    n_png = sum(len(files) for _, _, files in os.walk(osp.join(out, 'train')))
    assert n_png == 10  # the 20-image run left nothing behind
    img = Image.open(osp.join(out, 'val', _read_ann(
        osp.join(out, 'meta', 'val.txt'))[0][0]))
    assert img.size == (28, 28)


def test_seeded_subset_is_balanced_and_deterministic():
    _, labels = read_fashion_mnist('val')
    a = balanced_subset(labels, 40, seed=3)
    assert np.array_equal(a, balanced_subset(labels, 40, seed=3))
    assert not np.array_equal(a, balanced_subset(labels, 40))
    assert np.bincount(labels[a], minlength=10).tolist() == [4] * 10
    assert len(balanced_subset(labels, None)) == 10000


def test_clear_errors_name_the_file(tmp_path):
    with pytest.raises(FashionMNISTError, match='t10k-images.*apt-get'):
        read_fashion_mnist('val', src=str(tmp_path))
    with gzip.open(tmp_path / 't10k-images-idx3-ubyte.gz', 'wb') as f:
        f.write(struct.pack('>IIII', 2049, 1, 28, 28) + bytes(784))
    with pytest.raises(FashionMNISTError, match='magic.*t10k-images'):
        read_fashion_mnist('val', src=str(tmp_path))
    with gzip.open(tmp_path / 't10k-images-idx3-ubyte.gz', 'wb') as f:
        f.write(struct.pack('>IIII', 2051, 2, 28, 28) + bytes(784))
    with pytest.raises(FashionMNISTError, match='corrupt'):
        read_fashion_mnist('val', src=str(tmp_path))
    (tmp_path / 't10k-images-idx3-ubyte.gz').write_bytes(b'not gzip')
    with pytest.raises(FashionMNISTError, match='gzip.*t10k-images'):
        read_fashion_mnist('val', src=str(tmp_path))


def test_cli(tmp_path, load_tool):
    main = load_tool('fashion_mnist').main
    out = str(tmp_path / 'cli')
    main(['--out', out, '--num-train', '10', '--num-val', '10',
          '--pad-to', '32'])
    assert len(_read_ann(osp.join(out, 'meta', 'train.txt'))) == 10
