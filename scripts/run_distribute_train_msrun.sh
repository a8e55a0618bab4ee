#!/bin/bash
# Data-parallel training with MindSpore's own launcher, msrun: Ascend, GPU or CPU, no rank table or MPI.
#
#   [DEVICE_TARGET=Ascend|GPU|CPU] [MASTER_PORT=8118] [LOG_DIR=msrun_log] \
#   bash scripts/run_distribute_train_msrun.sh [DEVICE_NUM] [EPOCH_SIZE] [LR] [DATASET] [CONFIG_PATH] \
#       [PRE_TRAINED](optional) [PRE_TRAINED_EPOCH_SIZE](optional) [--key=value ...](optional)
#   e.g. DEVICE_TARGET=Ascend bash scripts/run_distribute_train_msrun.sh 8 500 0.2 coco config/ssd300.yaml
#        DEVICE_TARGET=CPU bash scripts/run_distribute_train_msrun.sh 2 5 0.2 coco default_config.yaml
#
# DEVICE_NUM workers start on this machine (worker i on device i); the arguments are those of
# run_distribute_train_gpu.sh. Environment: DEVICE_TARGET (default: the config's device_target),
# MASTER_PORT (msrun's scheduler port, default 8118), LOG_DIR (msrun's log folder, default
# ./msrun_log: worker_<rank>.log per rank and scheduler.log). The log of rank 0 is also shown here.
# Checkpoints go to <checkpoint_path>/ckpt_<rank>. LR is used as given (batch_size is per device).
# Further --key=value arguments go to train.py. The script waits for every worker and fails if one fails.
USAGE="[DEVICE_NUM] [EPOCH_SIZE] [LR] [DATASET] [CONFIG_PATH] [PRE_TRAINED](optional) \
[PRE_TRAINED_EPOCH_SIZE](optional) [--key=value ...]  (env: DEVICE_TARGET, MASTER_PORT, LOG_DIR)"
source "$(dirname "${BASH_SOURCE[0]}")/launch_common.sh"

split_args "$@"
check_train_args DEVICE_NUM 1
check_device_target
MASTER_PORT=${MASTER_PORT:-8118}
check_int MASTER_PORT "$MASTER_PORT" 1024 65535
LOG_DIR=${LOG_DIR:-msrun_log}
command -v msrun >/dev/null 2>&1 \
    || fail "msrun not found: it comes with MindSpore 2.3 or later; put its bin folder on PATH"
check_python

train_args "${POS[1]}" "${POS[2]}" "${POS[3]}" "$CONFIG" "$PRE_TRAINED" "${POS[6]}"
build_mindrecord

echo "$SCRIPT_NAME: starting ${POS[0]} workers${DEVICE_TARGET:+ on $DEVICE_TARGET}; logs in $LOG_DIR/worker_<rank>.log"
msrun --worker_num="${POS[0]}" --local_worker_num="${POS[0]}" --master_port="$MASTER_PORT" \
    --log_dir="$LOG_DIR" --join=True --tail_worker_log=0 \
    "$ROOT/train.py" --run_distribute=True "${TRAIN_ARGS[@]}" \
    || { echo "$SCRIPT_NAME: a worker failed; see $LOG_DIR/worker_<rank>.log" >&2; exit 1; }
echo "$SCRIPT_NAME: all ${POS[0]} workers finished"
