#!/bin/bash
# COCO mAP of one checkpoint on one device (Ascend, GPU or CPU).
#
#   [DEVICE_TARGET=Ascend|GPU|CPU] \
#   bash scripts/run_eval.sh [DATASET] [CHECKPOINT_PATH] [DEVICE_ID] [CONFIG_PATH] [--key=value ...](optional)
#   e.g. bash scripts/run_eval.sh coco LOG4/ssd-500_458.ckpt 0 config/ssd300.yaml
#        bash scripts/run_eval.sh coco output/checkpoint/ckpt_0/ssd-500_458.ckpt 0 config/ssd300.yaml
#
# DEVICE_TARGET defaults to the config's device_target. Runs from the current folder; the log is shown
# and kept in eval<DEVICE_ID>/log.txt. Further --key=value arguments go to eval.py.
USAGE="[DATASET] [CHECKPOINT_PATH] [DEVICE_ID] [CONFIG_PATH] [--key=value ...]  (env: DEVICE_TARGET)"
source "$(dirname "${BASH_SOURCE[0]}")/launch_common.sh"

split_args "$@"
check_count 4
check_dataset "${POS[0]}"
resolve_file CHECKPOINT_PATH "${POS[1]}" CHECKPOINT
check_int DEVICE_ID "${POS[2]}" 0
resolve_file CONFIG_PATH "${POS[3]}" CONFIG root
check_device_target
check_python

EVAL_ARGS=(--dataset="${POS[0]}" --checkpoint_file_path="$CHECKPOINT" --device_id="${POS[2]}" --config_path="$CONFIG")
[[ -n "$DEVICE_TARGET" ]] && EVAL_ARGS+=(--device_target="$DEVICE_TARGET")
mkdir -p "eval${POS[2]}"
echo "$SCRIPT_NAME: evaluating $CHECKPOINT on device ${POS[2]}; log in $(pwd)/eval${POS[2]}/log.txt"
set -o pipefail
DEVICE_ID=${POS[2]} python "$ROOT/eval.py" "${EVAL_ARGS[@]}" "${EXTRA[@]}" 2>&1 | tee "eval${POS[2]}/log.txt"
