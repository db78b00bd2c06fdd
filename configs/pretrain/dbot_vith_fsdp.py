# dBOT ViT-H/14 as dbot_vith.py, trained with FSDP through mmengine's
# FlexibleRunner and bf16 autocast (no loss scaler).
#
# What is sharded: the student encoder and the decoder, one FSDP unit each
# (dbot_student_wrap_policy): their gradients and AdamW state are split over
# the ranks (with 32 ranks ~10 GB -> ~0.3 GB per GPU for ViT-H); each unit is
# gathered whole for its forward/backward. The frozen teacher stays outside
# FSDP, replicated on every rank (no gradients or optimizer state to shard),
# so a stage boundary copies the gathered student into it in place
# (DBOT.bootstrap_teacher / reinit_student gather the units themselves).
#
# Not for this strategy: grad clipping through OptimWrapper (it would take the
# norm of the local shard only; ViT-H is trained without clipping anyway).
# Checked on CPU (2 gloo processes, demo-size model): a stage boundary gives
# checkpoints bit-identical to DDP, and a run resumed at or after a boundary
# ends bit-identical to the uninterrupted one (tests/engine/
# test_fsdp_resume.py; DBOTFSDPStrategy fixes two resume bugs, see
# dbot_mm/engine/fsdp.py and docs/performance.md). Without CUDA the strategy
# places the units on the CPU. Not run on GPUs yet.
#   tools/dist_train.sh configs/pretrain/dbot_vith_fsdp.py 8
_base_ = ['./dbot_vith.py']

runner_type = 'FlexibleRunner'
strategy = dict(
    # mmengine's FSDPStrategy with resume fixed (dbot_mm/engine/fsdp.py)
    type='DBOTFSDPStrategy',
    model_wrapper=dict(
        auto_wrap_policy=dict(type='dbot_student_wrap_policy'),
        ignored_modules=['teacher'],
        use_orig_params=True,  # DBOT edits the original Parameters in place
        sharding_strategy='FULL_SHARD'),
    # one consolidated file on rank 0, loadable without FSDP (e.g. by the
    # converters and downstream configs)
    state_dict_cfg='full')

# bf16 autocast on the GPUs; bf16 needs no loss scale, so no found-inf sync.
optim_wrapper = dict(
    type='AutocastOptimWrapper',
    dtype='bfloat16',
    optimizer=dict(fused=True))  # one kernel per tensor instead of ~10
