# Target study (paper Table 1), row "dBOT, 3 stages": the teacher is
# bootstrapped twice (epochs 533 and 1066 of 1600). Exactly
# configs/pretrain/dbot_vitb_3stage.py (the paper's det / seg recipe): target
# keys as dbot_vitb.py, only the stage hook and schedule differ; listed here
# so that the whole study sits in one folder.
#   tools/dist_train.sh configs/pretrain/targets/dbot_3stage.py 32
_base_ = ['../dbot_vitb_3stage.py']
