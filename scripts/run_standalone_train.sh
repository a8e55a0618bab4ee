#!/bin/bash
# Training on one device (Ascend, GPU or CPU).
#
#   [DEVICE_TARGET=Ascend|GPU|CPU] \
#   bash scripts/run_standalone_train.sh [DEVICE_ID] [EPOCH_SIZE] [LR] [DATASET] [CONFIG_PATH] \
#       [PRE_TRAINED](optional) [PRE_TRAINED_EPOCH_SIZE](optional) [--key=value ...](optional)
#   e.g. bash scripts/run_standalone_train.sh 0 500 0.025 coco config/ssd300.yaml
#
# DEVICE_TARGET defaults to the config's device_target. Runs from the current folder; the log is shown
# and kept in LOG/log.txt, checkpoints go to checkpoint_path. Further --key=value arguments go to train.py.
USAGE="[DEVICE_ID] [EPOCH_SIZE] [LR] [DATASET] [CONFIG_PATH] [PRE_TRAINED](optional) \
[PRE_TRAINED_EPOCH_SIZE](optional) [--key=value ...]  (env: DEVICE_TARGET)"
source "$(dirname "${BASH_SOURCE[0]}")/launch_common.sh"

split_args "$@"
check_train_args DEVICE_ID 0
check_device_target
check_python

train_args "${POS[1]}" "${POS[2]}" "${POS[3]}" "$CONFIG" "$PRE_TRAINED" "${POS[6]}"
mkdir -p LOG
echo "$SCRIPT_NAME: training on device ${POS[0]}; log in $(pwd)/LOG/log.txt"
set -o pipefail
DEVICE_ID=${POS[0]} python "$ROOT/train.py" --device_id="${POS[0]}" "${TRAIN_ARGS[@]}" 2>&1 | tee LOG/log.txt
