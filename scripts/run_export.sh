#!/bin/bash
# Export a checkpoint as MINDIR, AIR (Ascend only) or ONNX: network + box decoding, NMS outside.
#
#   [DEVICE_TARGET=Ascend|GPU|CPU] \
#   bash scripts/run_export.sh [CHECKPOINT_PATH] [FILE_FORMAT] [FILE_NAME](optional) [CONFIG_PATH](optional) \
#       [--key=value ...](optional)
#   e.g. bash scripts/run_export.sh output/checkpoint/ssd-60_50.ckpt ONNX ssd
#        DEVICE_TARGET=Ascend bash scripts/run_export.sh LOG4/ssd-500_458.ckpt AIR ssd config/ssd300.yaml
#
# FILE_NAME defaults to ssd (the suffix is added). Further --key=value arguments go to export.py, e.g.
# --batch_size=8 (the default is 1, what the C++ app and the onnxruntime backend run).
USAGE="[CHECKPOINT_PATH] [FILE_FORMAT] [FILE_NAME](optional) [CONFIG_PATH](optional) [--key=value ...]  (env: DEVICE_TARGET)"
source "$(dirname "${BASH_SOURCE[0]}")/launch_common.sh"

split_args "$@"
check_count 2 3 4
resolve_file CHECKPOINT_PATH "${POS[0]}" CHECKPOINT
[[ "${POS[1]}" == MINDIR || "${POS[1]}" == AIR || "${POS[1]}" == ONNX ]] \
    || fail "FILE_FORMAT must be MINDIR, AIR or ONNX, got '${POS[1]}'"
EXPORT_ARGS=(--checkpoint_file_path="$CHECKPOINT" --file_format="${POS[1]}" --file_name="${POS[2]:-ssd}")
if [[ ${#POS[@]} -eq 4 ]]; then
    resolve_file CONFIG_PATH "${POS[3]}" CONFIG root
    EXPORT_ARGS+=(--config_path="$CONFIG")
fi
check_device_target
[[ -n "$DEVICE_TARGET" ]] && EXPORT_ARGS+=(--device_target="$DEVICE_TARGET")
check_python

python "$ROOT/export.py" "${EXPORT_ARGS[@]}" "${EXTRA[@]}"
