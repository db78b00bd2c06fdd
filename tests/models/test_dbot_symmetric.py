"""DBOTSymmetric: the symmetric (BEiT-style) student of the CLIP-teacher rows.

Tiny models on CPU: a 32 px image, 8 px patches (a 4 x 4 grid), a random
CLIP-like teacher (ln_pre, QuickGELU, no patch bias, output projection).
"""
import copy
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.dataset import default_collate
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmpretrain.models.selfsup.beit import BEiTPretrainViT
from mmpretrain.registry import MODELS, TRANSFORMS

import dbot_mm  # noqa: F401

IMG, PATCH, GRID = 32, 8, 4
S_ARCH = dict(embed_dims=32, num_layers=2, num_heads=2,
              feedforward_channels=64)
T_ARCH = dict(embed_dims=48, num_layers=2, num_heads=2,
              feedforward_channels=96)
CLIP_CONFIGS = {
    # config: (student arch, patch, teacher arch, teacher px, teacher patch,
    #          teacher out width, mask grid)
    'dbot_vitb_clip-b16.py': ('b', 16, 'b', 224, 16, 512, (14, 14)),
    'dbot_vitl_clip-l14.py': ('l', 16, 'l', 196, 14, 768, (14, 14)),
    'dbot_vith_clip-l14.py': ('h', 14, 'l', 224, 14, 768, (16, 16)),
}


@pytest.fixture(autouse=True)
def _scope():
    init_default_scope('mmpretrain')


def tiny_cfg(**student):
    return dict(
        type='DBOTSymmetric',
        backbone=dict(type='DBOTSymmetricViT', arch=S_ARCH, img_size=IMG,
                      patch_size=PATCH, **student),
        neck=dict(type='TokenProjection'),
        head=dict(type='MaskedDistillHead',
                  loss=dict(type='DistillCosineLoss', eps=1e-6),
                  norm_target=False),
        teacher=dict(
            type='PretrainedTeacher', arch=T_ARCH, img_size=IMG,
            patch_size=PATCH, pre_norm=True, final_norm=True,
            out_proj_dims=24, norm_cfg=dict(type='LN', eps=1e-5),
            patch_cfg=dict(bias=False),
            layer_cfgs=dict(act_cfg=dict(type='mmpretrain.QuickGELU'))))


def build(seed=0, perturb=True, **student):
    torch.manual_seed(seed)
    model = MODELS.build(tiny_cfg(**student))
    model.init_weights()
    if perturb:  # layer scale, bias tables, k-bias away from their init
        with torch.no_grad():
            for p in model.backbone.parameters():
                if p.requires_grad:
                    p.add_(torch.randn_like(p) * 0.05)
    return model


def fixed_mask(batch=2):
    mask = torch.zeros(batch, GRID * GRID, dtype=torch.bool)
    mask[0, [0, 1, 4, 5, 10]] = True
    mask[1, [6, 7, 11, 15]] = True
    return mask


def images(batch=2, seed=1):
    return torch.randn(batch, 3, IMG, IMG,
                       generator=torch.Generator().manual_seed(seed))


def test_builds_and_trains_a_step():
    model = build(perturb=False)
    assert model.neck.proj.in_features == 32
    assert model.neck.proj.out_features == model.teacher.out_dims == 24
    assert model.backbone.num_patches == model.teacher.num_patches == 16
    # official init: zero bias tables, layer scale 0.1, no abs position
    bb = model.backbone
    assert not bb.pos_embed.requires_grad and not bb.pos_embed.any()
    assert not bb.layers[0].attn.rel_pos_bias.relative_position_bias_table \
        .any()
    assert torch.allclose(bb.layers[1].ffn.gamma2.weight,
                          torch.full((32, ), 0.1))
    assert bb.mask_token.abs().max() <= 0.02 and bb.mask_token.any()
    # one bias module shared by the blocks, listed under every block
    assert bb.layers[0].attn.rel_pos_bias is bb.layers[1].attn.rel_pos_bias
    keys = [k for k in model.state_dict() if k.endswith('bias_table')]
    assert len(keys) == 2
    assert len([k for k, _ in model.named_parameters()
                if k.endswith('bias_table')]) == 1
    # and loads back strictly (block 0's copy is the shared table)
    state = bb.state_dict()
    table0 = 'layers.0.attn.rel_pos_bias.relative_position_bias_table'
    state[table0] = torch.full_like(state[table0], 0.5)
    bb.load_state_dict(state)
    assert (bb.layers[1].attn.rel_pos_bias.relative_position_bias_table
            == 0.5).all()
    teacher_before = copy.deepcopy(model.teacher.state_dict())
    student_before = copy.deepcopy(model.backbone.state_dict())
    optim = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=1e-3)
    loss = model.loss(images(), mask=fixed_mask())['loss']
    loss.backward()
    table = bb.layers[0].attn.rel_pos_bias.relative_position_bias_table
    assert table.grad is not None and table.grad.abs().sum() > 0
    assert bb.mask_token.grad.abs().sum() > 0
    optim.step()
    assert torch.isfinite(loss) and 0 < loss < 2
    for k, v in model.teacher.state_dict().items():
        assert torch.equal(v, teacher_before[k]), k
    assert not torch.equal(bb.mask_token, student_before['mask_token'])
    assert not bb.pos_embed.any()
    assert all(not p.requires_grad for p in model.teacher.parameters())


@pytest.mark.parametrize('predict_cls', [False, True])
def test_loss_is_official_negcosine(predict_cls):
    """1 - mean cos over the masked patches (engine_for_pretraining.py:
    ``NegCosine(lm_head(x[mask]), tok(images)[mask])``), targets as the
    teacher returns them (no normalisation)."""
    model = build()
    model.predict_cls = predict_cls
    model.eval()  # no drop path: two forwards agree
    x, mask = images(), fixed_mask()
    loss = model.loss(x, mask=mask)['loss']
    with torch.no_grad():
        target = model.teacher(x)
        pred = model.neck(model.backbone(x, mask))
    if predict_cls:  # --recon_cls_token: cls counts as one more token
        mask = torch.cat([mask.new_ones(2, 1), mask], dim=1)
    else:
        target, pred = target[:, 1:], pred[:, 1:]
    cos = F.cosine_similarity(pred[mask], target[mask], dim=-1, eps=1e-6)
    assert cos.numel() == int(mask.sum())
    expected = 1 - cos.mean()
    assert torch.allclose(loss, expected, atol=1e-6), (loss, expected)
    # not a normalised target: standardising the teacher tokens changes it
    t_norm = (target - target.mean(-1, keepdim=True)) / (
        target.var(-1, keepdim=True) + 1e-6).sqrt()
    other = 1 - F.cosine_similarity(pred[mask], t_norm[mask], dim=-1).mean()
    assert not torch.allclose(loss, other, atol=1e-4)


def _to_mmpretrain_beit(student):
    """Our student's weights under mmpretrain BEiTPretrainViT's names."""
    src = student.state_dict()
    C = student.embed_dims
    out = {}
    for k, v in src.items():
        if k.endswith('relative_position_bias_table'):
            out['rel_pos_bias.relative_position_bias_table'] = v
        elif k.endswith('attn.qkv.bias'):
            prefix = k[:-len('qkv.bias')]
            out[prefix + 'q_bias'] = v[:C]
            out[prefix + 'v_bias'] = v[2 * C:]
        elif k.endswith('attn.gamma1.weight'):
            out[k.replace('attn.gamma1.weight', 'gamma_1')] = v
        elif k.endswith('ffn.gamma2.weight'):
            out[k.replace('ffn.gamma2.weight', 'gamma_2')] = v
        elif k != 'pos_embed':
            out[k] = v
    return out


def test_student_is_beit_with_shared_rel_pos_bias():
    """Same function as mmpretrain's BEiTPretrainViT (the official
    modeling_pretrain.py): mask tokens, shared relative position bias,
    layer scale, no absolute position, final norm. Our key bias is set to
    random values: it cancels in the softmax."""
    model = build()
    model.eval()
    student = model.backbone
    with torch.no_grad():
        for layer in student.layers:
            layer.attn.qkv.bias[32:64].normal_()
    beit = BEiTPretrainViT(arch=S_ARCH, img_size=IMG, patch_size=PATCH,
                           use_abs_pos_emb=False, final_norm=True,
                           layer_scale_init_value=0.1)
    missing, unexpected = beit.load_state_dict(
        _to_mmpretrain_beit(student), strict=False)
    assert missing == ['rel_pos_bias.relative_position_index'] \
        and not unexpected
    beit.eval()
    x, mask = images(), fixed_mask()
    ours = student(x, mask)
    ref = beit(x, mask.view(2, GRID, GRID))[0]
    assert ours.shape == ref.shape == (2, 17, 32)
    assert (ours - ref).abs().max() < 1e-5


def test_masked_pixels_do_not_reach_the_student():
    model = build()
    model.eval()
    x, mask = images(), fixed_mask()
    pixel_mask = mask.view(2, GRID, GRID).repeat_interleave(
        PATCH, 1).repeat_interleave(PATCH, 2)[:, None].expand_as(x)
    noise = torch.randn_like(x) * 3
    with torch.no_grad():
        base = model.neck(model.backbone(x, mask))
        hidden = model.neck(model.backbone(
            torch.where(pixel_mask, x + noise, x), mask))
        shown = model.neck(model.backbone(
            torch.where(pixel_mask, x, x + noise), mask))
        # the teacher sees everything
        t0 = model.teacher(x)
        t1 = model.teacher(torch.where(pixel_mask, x + noise, x))
    assert torch.equal(base, hidden)
    assert not torch.allclose(base, shown)
    assert not torch.allclose(t0, t1)


def test_mask_comes_from_the_pipeline():
    """BEiTMaskGenerator -> PackInputs -> DataSample.mask -> the loss."""
    cfg = Config.fromfile('configs/pretrain/dbot_vitb_clip-b16.py')
    pipeline = []
    for t in cfg.train_dataloader.dataset.pipeline[1:]:  # no file loading
        t = copy.deepcopy(t)
        if t.type == 'RandomResizedCrop':
            t.scale = IMG
        elif t.type == 'BEiTMaskGenerator':
            t.update(input_size=(GRID, GRID), num_masking_patches=6,
                     min_num_patches=2)
        pipeline.append(TRANSFORMS.build(t))
    rng = np.random.default_rng(0)
    batch = []
    for _ in range(2):
        results = dict(img=rng.integers(0, 255, (40, 48, 3), np.uint8))
        for t in pipeline:
            results = t(results)
        batch.append(results)
    data = default_collate(batch)
    model = build()
    model.data_preprocessor = MODELS.build(cfg.data_preprocessor)
    data = model.data_preprocessor(data, training=True)
    masks = torch.stack([ds.mask for ds in data['data_samples']])
    assert masks.shape == (2, GRID, GRID)
    assert 0 < masks.sum(dim=(1, 2)).max() <= 6
    loss = model(**data, mode='loss')['loss']
    model.eval()
    replay = model.loss(data['inputs'], mask=masks)['loss']
    model.train()
    assert torch.isfinite(loss)
    with pytest.raises(ValueError, match='BEiTMaskGenerator'):
        model.loss(data['inputs'], [type(ds)() for ds in data['data_samples']])
    assert torch.isfinite(replay)


@pytest.mark.parametrize('name', sorted(CLIP_CONFIGS))
def test_block_mask_count_matches_the_config(name):
    s_arch, patch, *_, grid = CLIP_CONFIGS[name]
    cfg = Config.fromfile('configs/pretrain/' + name)
    (gen, ) = [t for t in cfg.train_dataloader.dataset.pipeline
               if t.type == 'BEiTMaskGenerator']
    assert (gen.num_masking_patches, gen.min_num_patches) == (78, 16)
    assert gen.max_num_patches is None
    assert tuple(gen.input_size) == grid == (224 // patch, ) * 2
    transform = TRANSFORMS.build(gen)
    np.random.seed(0)
    random.seed(0)
    counts = [int(transform(dict(img=None))['mask'].sum())
              for _ in range(50)]
    assert max(counts) == 78 and min(counts) >= 16
    # BEiT's generator stops short only when no block fits any more
    assert np.mean([c == 78 for c in counts]) > 0.8


def test_transfers_to_vitdense(tmp_path):
    """backbone.* loads into ViTDense (cls / det / seg) unchanged: the
    shared table becomes one copy per block, the zero pos_embed loads."""
    model = build()
    model.eval()
    path = str(tmp_path / 'student.pth')
    torch.save({'state_dict': {'backbone.' + k: v for k, v in
                               model.backbone.state_dict().items()}}, path)
    dense = MODELS.build(dict(
        type='ViTDense', arch=S_ARCH, img_size=IMG, patch_size=PATCH,
        use_rel_pos_bias=True, layer_scale_init_value=0.1, final_norm=True,
        out_type='raw',
        init_cfg=dict(type='Pretrained', checkpoint=path,
                      prefix='backbone.')))
    dense.init_weights()
    dense.eval()
    x = images()
    with torch.no_grad():
        ours = model.backbone(x, torch.zeros(2, 16, dtype=torch.bool))
        theirs = dense(x)[0]
    assert (ours - theirs).abs().max() < 1e-5
    tables = [layer.attn.rel_pos_bias.relative_position_bias_table
              for layer in dense.layers]
    assert tables[0] is not tables[1] and torch.equal(tables[0], tables[1])
    # the 448 px fine-tune path: a larger grid resizes the tables
    big = MODELS.build(dict(
        type='ViTDense', arch=S_ARCH, img_size=2 * IMG, patch_size=PATCH,
        use_rel_pos_bias=True, layer_scale_init_value=0.1,
        out_type='avg_featmap',
        init_cfg=dict(type='Pretrained', checkpoint=path,
                      prefix='backbone.'), strict_pretrained=False))
    big.init_weights()
    assert big(torch.randn(1, 3, 2 * IMG, 2 * IMG))[0].shape == (1, 32)


def shrink(model_cfg):
    """Same recipe, a 64-wide student and teacher, 2 blocks each."""
    cfg = copy.deepcopy(model_cfg)
    cfg.backbone.arch = dict(embed_dims=64, num_layers=2, num_heads=2,
                             feedforward_channels=128)
    cfg.teacher.arch = dict(embed_dims=48, num_layers=2, num_heads=2,
                            feedforward_channels=96)
    cfg.teacher.checkpoint = None  # random CLIP-like tower
    return cfg


@pytest.mark.parametrize('name', sorted(CLIP_CONFIGS))
def test_clip_configs_build_shrunk(name):
    s_arch, patch, t_arch, t_px, t_patch, t_out, grid = CLIP_CONFIGS[name]
    cfg = Config.fromfile('configs/pretrain/' + name)
    m = cfg.model
    assert m.type == 'DBOTSymmetric' and not m.predict_cls
    assert (m.backbone.type, m.backbone.arch, m.backbone.patch_size) == (
        'DBOTSymmetricViT', s_arch, patch)
    assert m.backbone.drop_path_rate == 0.1
    assert m.backbone.layer_scale_init_value == 0.1
    assert not m.backbone.use_abs_pos_emb and m.backbone.share_rel_pos_bias
    assert m.head.loss == dict(type='DistillCosineLoss', eps=1e-6)
    assert not m.head.norm_target
    t = m.teacher
    assert (t.type, t.arch, t.img_size, t.patch_size, t.out_proj_dims) == (
        'PretrainedTeacher', t_arch, t_px, t_patch, t_out)
    assert t.pre_norm and t.final_norm and t.patch_cfg == dict(bias=False)
    assert (t_px // t_patch, ) * 2 == grid  # teacher grid = student grid
    ow = cfg.optim_wrapper
    assert ow.optimizer.lr == 3e-3 and ow.optimizer.betas == (0.9, 0.98)
    assert ow.optimizer.eps == 1e-6 and ow.clip_grad == dict(max_norm=3.0)
    assert cfg.auto_scale_lr.base_batch_size == 4096
    assert cfg.train_dataloader.batch_size == 128
    assert cfg.train_cfg.max_epochs == 1600
    warm, cos = cfg.param_scheduler
    assert (warm.begin, warm.end, warm.start_factor) == (0, 10, 0.)
    assert (cos.begin, cos.end, cos.eta_min) == (10, 1600, 1e-5)
    crop = [p for p in cfg.train_dataloader.dataset.pipeline
            if p.type == 'RandomResizedCrop'][0]
    assert tuple(crop.crop_ratio_range) == (0.4, 1.0)
    assert not [h for h in cfg.custom_hooks
                if h['type'] == 'StageBootstrapHook']

    model = MODELS.build(shrink(m))
    model.init_weights()
    assert model.neck.proj.out_features == t_out
    assert model.backbone.patch_resolution == grid
    assert model.teacher.num_patches == model.backbone.num_patches

    ow_cfg = copy.deepcopy(ow)
    ow_cfg.type = 'OptimWrapper'  # AmpOptimWrapper needs a GPU
    ow_cfg.pop('dtype'), ow_cfg.pop('loss_scale')
    ow_cfg.optimizer.pop('fused')
    optim = build_optim_wrapper(model, ow_cfg).optimizer
    decay = {id(p): g['weight_decay'] for g in optim.param_groups
             for p in g['params']}
    for pname, p in model.named_parameters():
        if not p.requires_grad:  # teacher, frozen zero pos_embed
            assert id(p) not in decay, pname
        elif p.ndim == 1 or 'cls_token' in pname:
            assert decay[id(p)] == 0, pname
        else:  # incl. mask token and relative position table (official)
            assert decay[id(p)] == 0.05, pname
    assert 'backbone.pos_embed' not in dict(model.named_parameters()) or \
        not model.backbone.pos_embed.requires_grad

    mask = torch.zeros(2, *grid, dtype=torch.bool)
    mask[:, 2:6, 3:8] = True
    loss = model.loss(torch.randn(2, 3, 224, 224), mask=mask)['loss']
    assert torch.isfinite(loss)


def test_config_mismatch_is_a_build_error():
    cfg = tiny_cfg()
    cfg['teacher']['img_size'] = 2 * IMG  # 8 x 8 teacher grid
    with pytest.raises(ValueError, match='teacher.img_size'):
        MODELS.build(cfg)


FINETUNE = {
    # config: (arch, patch, img, epochs, warmup, lr, layer decay, drop path)
    'vit-base-p16_dbot-clip-b16-ft_32xb32-coslr-100e_in1k.py':
    ('b', 16, 224, 100, 20, 2e-4, 0.65, 0.1),
    'vit-large-p16_dbot-clip-l14-ft_32xb32-coslr-50e_in1k.py':
    ('l', 16, 224, 50, 5, 1e-4, 0.8, 0.2),
    'vit-huge-p14_dbot-clip-l14-ft_32xb32-coslr-50e_in1k.py':
    ('h', 14, 224, 50, 5, 5e-5, 0.85, 0.3),
    'vit-huge-p14_dbot-clip-l14-ft-448px_32xb32-coslr-10e_in1k.py':
    ('h', 14, 448, 10, 1, 5e-5, 0.95, 0.4),
}


@pytest.mark.parametrize('name', sorted(FINETUNE))
def test_clip_finetune_configs_load_a_symmetric_run(name, tmp_path):
    """Official DOWNSTREAM.md values; the shrunk config loads what a
    DBOTSymmetric run saves (or, at 448 px, the 224 px fine-tune) with no
    missing key, and classifies."""
    arch, patch, img, epochs, warmup, lr, decay, dpr = FINETUNE[name]
    cfg = Config.fromfile('configs/cls/clip/' + name)
    bb = cfg.model.backbone
    assert (bb.type, bb.arch, bb.patch_size, bb.img_size) == (
        'ViTDense', arch, patch, img)
    assert bb.use_rel_pos_bias and bb.layer_scale_init_value == 0.1
    assert bb.out_type == 'avg_featmap' and bb.drop_path_rate == dpr
    ow = cfg.optim_wrapper
    assert ow.optimizer.lr == lr and ow.optimizer.weight_decay == 0.05
    assert ow.paramwise_cfg.layer_decay_rate == decay
    assert cfg.train_dataloader.batch_size * 32 == 1024
    assert cfg.train_cfg.max_epochs == epochs
    warm, cos = cfg.param_scheduler
    assert (warm.end, warm.start_factor, cos.end, cos.eta_min) == (
        warmup, 0., epochs, 1e-6)
    crops = {t.type: t for t in cfg.train_dataloader.dataset.pipeline}
    tests = {t.type: t for t in cfg.val_dataloader.dataset.pipeline}
    assert crops['RandomResizedCrop'].scale == img
    assert tests['CenterCrop'].crop_size == img
    assert tests['ResizeEdge'].scale == (img if img >= 384 else 256)

    # a tiny version: grid 2 x 2 at 224 px-equivalent, 4 x 4 at 448
    small = img * 2 * patch // 224
    student = MODELS.build(dict(type='DBOTSymmetricViT', arch=S_ARCH,
                                img_size=2 * patch, patch_size=patch))
    student.init_weights()
    with torch.no_grad():
        for p in student.parameters():
            if p.requires_grad:
                p.normal_()
    state = {'backbone.' + k: v for k, v in student.state_dict().items()}
    if img == 448:  # starts from the 224 px fine-tune: backbone + head
        for k in ('mask_token', 'ln1.weight', 'ln1.bias'):
            state.pop('backbone.' + k)
        state.update({'backbone.ln2.weight': torch.ones(32),
                      'backbone.ln2.bias': torch.zeros(32),
                      'head.fc.weight': torch.randn(10, 32),
                      'head.fc.bias': torch.randn(10)})
    path = str(tmp_path / 'ckpt.pth')
    torch.save({'state_dict': state}, path)
    bb.update(arch=S_ARCH, img_size=small, init_cfg=dict(checkpoint=path))
    cfg.model.head.update(in_channels=32, num_classes=10)
    if img == 448:
        cfg.model.head.init_cfg.checkpoint = path
    model = MODELS.build(cfg.model)
    model.init_weights()
    report = model.backbone.pretrained_report
    assert not report['missing'], report
    if img == 448:
        assert not report['new'] and not report['unexpected'], report
    else:  # only the global-pool norm is new; the mask token and the
        # final norm (official fine-tuning: mean pooling + fc_norm) are left
        assert report['new'] == ['ln2.bias', 'ln2.weight'], report
        assert report['unexpected'] == ['ln1.bias', 'ln1.weight',
                                        'mask_token'], report
    got = dict(model.backbone.named_parameters())
    table = 'layers.1.attn.rel_pos_bias.relative_position_bias_table'
    if img == 448:  # tables resized to the 4 x 4 grid
        assert got[table].shape[0] == (2 * 4 - 1)**2 + 3
        assert torch.equal(model.head.fc.weight, state['head.fc.weight'])
    else:
        assert torch.equal(got[table], state['backbone.' + table])
        assert not got['pos_embed'].any()  # the student's zero table
    out = model(torch.randn(2, 3, small, small), mode='tensor')
    assert out.shape == (2, 10)
