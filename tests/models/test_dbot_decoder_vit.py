"""Student encoder (DBOTViT) and decoder (DBOTDecoder)."""
import copy

import pytest
import torch
from mmpretrain.models.utils import build_2d_sincos_position_embedding
from mmpretrain.registry import MODELS

from dbot_tiny import ARCH, IMG, NUM_PATCHES, PATCH


def _student(**kw):
    cfg = dict(type='DBOTViT', arch=copy.deepcopy(ARCH), img_size=IMG,
               patch_size=PATCH, mask_ratio=0.75)
    cfg.update(kw)
    m = MODELS.build(cfg)
    m.init_weights()
    return m


def _decoder(**kw):
    cfg = dict(type='DBOTDecoder', num_patches=NUM_PATCHES, embed_dim=32,
               predict_dim=48, decoder_embed_dim=32, decoder_depth=2,
               decoder_num_heads=2)
    cfg.update(kw)
    m = MODELS.build(cfg)
    m.init_weights()
    return m


def test_student_masks_by_given_noise(images):
    s = _student()
    g = torch.Generator().manual_seed(1)
    noise = torch.rand(2, NUM_PATCHES, generator=g)
    latent, mask, restore = s(images, noise=noise)
    keep = int(NUM_PATCHES * 0.25)
    assert latent.shape == (2, 1 + keep, 32)
    # the kept patches are exactly those with the smallest noise
    smallest = noise.argsort(1)[:, :keep]
    for b in range(2):
        assert set(torch.nonzero(mask[b] == 0).flatten().tolist()) == \
            set(smallest[b].tolist())
    assert torch.equal(mask.sum(1), torch.full((2, ), NUM_PATCHES - keep,
                                               dtype=mask.dtype))
    # replaying the 0/1 mask as noise reproduces it exactly
    _, replayed, _ = s(images, noise=mask)
    assert torch.equal(replayed, mask)

def test_student_bad_sizes():
    with pytest.raises(ValueError, match=r'img_size=30.*patch_size=8'):
        _student(img_size=30)
    s = _student()
    with pytest.raises(ValueError, match='img_size'):
        s(torch.randn(1, 3, 40, 40))
    with pytest.raises(ValueError, match='noise'):
        s(torch.randn(1, 3, IMG, IMG), noise=torch.rand(1, 5))


def test_decoder_keeps_cls_and_predicts_teacher_width():
    d = _decoder()
    x = torch.randn(2, 1 + 4, 32)
    restore = torch.stack([torch.randperm(NUM_PATCHES) for _ in range(2)])
    out = d(x, restore)
    assert out.shape == (2, 1 + NUM_PATCHES, 48)
    # the cls slot is the encoder's cls token, not a mask token: changing
    # it alone changes the cls prediction
    x2 = x.clone()
    x2[:, 0] += 1
    assert not torch.allclose(d(x2, restore)[:, 0], out[:, 0])

    expected = build_2d_sincos_position_embedding(4, 32, cls_token=True)
    torch.testing.assert_close(d.decoder_pos_embed.data, expected.float())
    assert not d.decoder_pos_embed.requires_grad
    assert d.predict_dim == 48 and _decoder(predict_dim=None).predict_dim == 32


def test_decoder_drop_path_and_bad_grid():
    d = _decoder(drop_path_rate=0.2)
    rates = [blk.attn.out_drop.drop_prob for blk in d.decoder_blocks]
    assert rates == pytest.approx([0., 0.2])
    with pytest.raises(ValueError, match='num_patches'):
        _decoder(num_patches=15)
