"""Official dBOT pre-training checkpoint -> dbot_mm -> the same loss.

``OfficialDBOT`` below re-implements the official ``models_mae.py`` forward
(timm blocks, official key names) independently of dbot_mm; its weights are
saved as the official code saves them, converted, loaded into ``DBOT``, and
both compute the loss on the same images and masking noise.
"""
import os.path as osp
import sys
from functools import partial

import pytest
import torch
from torch import nn

timm = pytest.importorskip('timm')
from mmpretrain.registry import MODELS  # noqa: E402
from timm.layers import PatchEmbed  # noqa: E402
from timm.models.vision_transformer import Block  # noqa: E402

import dbot_mm  # noqa: E402,F401
from dbot_mm.models.converters import (convert_official_pretrain,  # noqa
                                       save_checkpoint)
from dbot_mm.utils import safe_load  # noqa: E402

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(ROOT, 'tools', 'model_converters'))

IMG, PATCH, DIM, HEADS = 32, 8, 64, 2
L = (IMG // PATCH)**2
LN = partial(nn.LayerNorm, eps=1e-6)


class OfficialDBOT(nn.Module):
    """Official MaskedAutoencoderViT (encoder, decoder, teacher forward)."""

    def __init__(self, dim=DIM, depth=2, heads=HEADS, decoder_depth=1,
                 decoder_dim=32, decoder_heads=2, predict_dim=None):
        super().__init__()
        self.patch_embed = PatchEmbed(IMG, PATCH, 3, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, L + 1, dim))
        self.blocks = nn.ModuleList(
            [Block(dim, heads, 4., qkv_bias=True, norm_layer=LN)
             for _ in range(depth)])
        self.norm = LN(dim)
        if decoder_depth:
            self.decoder_embed = nn.Linear(dim, decoder_dim)
            self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
            self.decoder_pos_embed = nn.Parameter(
                torch.zeros(1, L + 1, decoder_dim))
            self.decoder_blocks = nn.ModuleList([
                Block(decoder_dim, decoder_heads, 4., qkv_bias=True,
                      norm_layer=LN) for _ in range(decoder_depth)])
            self.decoder_norm = LN(decoder_dim)
            self.decoder_predp = nn.Linear(decoder_dim, predict_dim or dim)

    def forward_encoder(self, x, noise):
        x = self.patch_embed(x) + self.pos_embed[:, 1:]
        N, _, D = x.shape
        keep = int(L * (1 - 0.75))
        ids_shuffle = torch.argsort(noise, dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        x = torch.gather(x, 1, ids_shuffle[:, :keep, None].repeat(1, 1, D))
        mask = torch.ones(N, L)
        mask[:, :keep] = 0
        mask = torch.gather(mask, 1, ids_restore)
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(N, -1, -1)
        x = torch.cat([cls, x], 1)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x), torch.cat([torch.ones(N, 1), mask], 1), \
            ids_restore

    def forward_decoder(self, x, ids_restore):
        x = self.decoder_embed(x)
        C = x.shape[2]
        tokens = self.mask_token.repeat(
            x.shape[0], ids_restore.shape[1] + 1 - x.shape[1], 1)
        x_ = torch.cat([x[:, 1:], tokens], 1)
        x_ = torch.gather(x_, 1, ids_restore[..., None].repeat(1, 1, C))
        x = torch.cat([x[:, :1], x_], 1) + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            x = blk(x)
        return self.decoder_predp(self.decoder_norm(x))

    def forward_teacher(self, x):
        x = self.patch_embed(x) + self.pos_embed[:, 1:]
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(
            x.shape[0], -1, -1)
        x = torch.cat([cls, x], 1)
        for blk in self.blocks:
            x = blk(x)
        return x  # tlayernorm=0

    def loss(self, imgs, noise, teacher):
        latent, mask, ids_restore = self.forward_encoder(imgs, noise)
        pred = self.forward_decoder(latent, ids_restore)
        target = teacher.forward_teacher(imgs)
        target = (target - target.mean(-1, keepdim=True)) / (
            target.var(-1, keepdim=True) + 1e-6)**.5
        loss = nn.SmoothL1Loss(beta=2.0, reduction='none')(pred, target)
        loss = loss.mean(-1)
        return (loss * mask).sum() / mask.sum()


def _dbot_cfg(teacher):
    return dict(
        type='DBOT',
        backbone=dict(
            type='DBOTViT',
            arch=dict(embed_dims=DIM, num_layers=2, num_heads=HEADS,
                      feedforward_channels=4 * DIM),
            img_size=IMG, patch_size=PATCH, mask_ratio=0.75),
        neck=dict(type='DBOTDecoder', num_patches=L, embed_dim=DIM,
                  decoder_embed_dim=32, decoder_depth=1,
                  decoder_num_heads=2),
        head=dict(type='MaskedDistillHead'),
        teacher=teacher,
        init_teacher_from_student=False)


def _randomized(model, randomize, seed):
    randomize(model, seed)
    return model


@pytest.mark.parametrize('teacher_depth', [2, 0])
def test_converted_checkpoint_gives_official_loss(tmp_path, randomize,
                                                  teacher_depth):
    student = _randomized(OfficialDBOT(), randomize, 0)
    teacher = _randomized(
        OfficialDBOT(depth=teacher_depth, decoder_depth=0), randomize, 1)
    src, tsrc = tmp_path / 'checkpoint-800.pth', \
        tmp_path / 'checkpoint-teacher-800.pth'
    torch.save(dict(model=student.state_dict(), epoch=799), src)
    torch.save(dict(model=teacher.state_dict()), tsrc)
    dst = str(tmp_path / 'dbot_mm.pth')

    import dbot_official_to_mm
    dbot_official_to_mm.main([str(src), dst, '--teacher', str(tsrc),
                              '--num-heads', str(HEADS), '--stage', '1'])

    model = MODELS.build(_dbot_cfg(dict(
        type='ViTTeacher',
        arch=dict(embed_dims=DIM, num_layers=2, num_heads=HEADS,
                  feedforward_channels=4 * DIM),
        img_size=IMG, patch_size=PATCH, depth=2)))
    state = safe_load(dst)['state_dict']
    result = model.load_state_dict(state, strict=False)
    inactive = [f'teacher.layers.{i}.' for i in range(teacher_depth, 2)]
    assert not result.unexpected_keys
    assert all(k.startswith(tuple(inactive)) for k in result.missing_keys)
    assert model.teacher.depth == teacher_depth and int(model.stage) == 1
    model.eval()

    imgs = torch.randn(3, 3, IMG, IMG)
    noise = torch.rand(3, L)
    with torch.no_grad():
        expected = student.loss(imgs, noise, teacher)
        got = model.loss(imgs, noise=noise)['loss']
    assert torch.allclose(got, expected, rtol=1e-5, atol=0)


def test_wider_pretrained_teacher(tmp_path, randomize):
    """A ViT-L-like teacher (wider, 3 heads) for a ViT-B-like student."""
    wide = 96
    student = _randomized(OfficialDBOT(predict_dim=wide), randomize, 2)
    teacher = _randomized(
        OfficialDBOT(dim=wide, heads=3, decoder_depth=0), randomize, 3)
    s_state, report, cfg = convert_official_pretrain(
        student.state_dict(), num_heads=HEADS)
    assert cfg['neck']['predict_dim'] == wide
    t_state, _, t_cfg = convert_official_pretrain(
        teacher.state_dict(), backbone_only=True, num_heads=3)
    t_file = save_checkpoint(t_state, str(tmp_path / 'vit-wide.pth'))

    model = MODELS.build(_dbot_cfg(dict(
        type='PretrainedTeacher', checkpoint=t_file,
        arch=t_cfg['backbone']['arch'], img_size=IMG, patch_size=PATCH)))
    model.init_weights()  # loads the teacher, strictly
    missing = model.load_state_dict(s_state, strict=False).missing_keys
    assert all(k.startswith('teacher.') or k == 'stage' for k in missing)
    assert model.neck.predict_dim == wide
    model.eval()

    imgs = torch.randn(2, 3, IMG, IMG)
    noise = torch.rand(2, L)
    with torch.no_grad():
        expected = student.loss(imgs, noise, teacher)
        got = model.loss(imgs, noise=noise)['loss']
    assert torch.allclose(got, expected, rtol=1e-5, atol=0)
    assert model.teacher_info()['origin'] == 'pretrained'
