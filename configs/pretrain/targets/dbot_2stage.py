# Target study (paper Table 1), row "dBOT, 2 stages": random teacher for
# epochs 0-800, then the stage-1 student as teacher (bootstrapped once, the
# student re-initialised) for 800-1600. Exactly configs/pretrain/dbot_vitb.py
# (the paper's classification recipe); listed here so that the whole study
# sits in one folder.
#   tools/dist_train.sh configs/pretrain/targets/dbot_2stage.py 32
_base_ = ['../dbot_vitb.py']
