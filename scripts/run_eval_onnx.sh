#!/bin/bash
# COCO mAP of an exported ONNX file with onnxruntime (CPU; CUDA with DEVICE_TARGET=GPU and onnxruntime-gpu).
#
#   [DEVICE_TARGET=CPU|GPU] bash scripts/run_eval_onnx.sh [ONNX_PATH] [CONFIG_PATH](optional) [--key=value ...](optional)
#   e.g. bash scripts/run_eval_onnx.sh ssd.onnx config/ssd300.yaml --coco_root=/data/coco2017
#
# CONFIG_PATH must be the config the file was exported with (default: default_config.yaml). Runs from
# the current folder; the log is shown and kept in eval_onnx/log.txt. Further --key=value arguments go
# to eval_onnx.py.
USAGE="[ONNX_PATH] [CONFIG_PATH](optional) [--key=value ...]  (env: DEVICE_TARGET)"
source "$(dirname "${BASH_SOURCE[0]}")/launch_common.sh"

split_args "$@"
check_count 1 2
resolve_file ONNX_PATH "${POS[0]}" ONNX
EVAL_ARGS=(--file_name="$ONNX")
if [[ ${#POS[@]} -eq 2 ]]; then
    resolve_file CONFIG_PATH "${POS[1]}" CONFIG root
    EVAL_ARGS+=(--config_path="$CONFIG")
fi
check_device_target
[[ -n "$DEVICE_TARGET" ]] && EVAL_ARGS+=(--device_target="$DEVICE_TARGET")
check_python

mkdir -p eval_onnx
echo "$SCRIPT_NAME: evaluating $ONNX with onnxruntime; log in $(pwd)/eval_onnx/log.txt"
set -o pipefail
python "$ROOT/eval_onnx.py" "${EVAL_ARGS[@]}" "${EXTRA[@]}" 2>&1 | tee eval_onnx/log.txt
