#!/bin/bash
# Inference of an exported MINDIR with the C++ app (ascend310_infer/) on Ascend 310/310P (or CPU, GPU),
# then COCO mAP of its outputs with postprocess.py.
#
#   [MINDSPORE_PATH=... | MS_LITE_HOME=...] \
#   bash scripts/run_infer_cpp.sh [MINDIR_PATH] [DATA_PATH] [DVPP](optional) [DEVICE_TYPE](optional) \
#       [DEVICE_ID](optional) [--key=value ...](optional)
#   e.g. bash scripts/run_infer_cpp.sh ssd.mindir /data/coco2017/val2017 CPU Ascend 0 --config_path=config/ssd300.yaml \
#            --anno_json=/data/coco2017/annotations/instances_val2017.json
#
# MINDIR_PATH: export.py --file_format=MINDIR output (batch 1). DATA_PATH: folder of the evaluation
# images. DVPP: CPU (default; pre-processing on the host) or DVPP (JPEG decode and resize on the
# Ascend device, normalisation by ascend310_infer/aipp.cfg). DEVICE_TYPE: Ascend (default), CPU or GPU.
# DEVICE_ID: default 0. postprocess.py reads the model keys from the .json export.py wrote beside the
# MINDIR; further --key=value arguments go to it (the ground truth; the config of a MINDIR without one). Runs from the current folder: outputs go to result_Files/, the
# timing to time_Result/, logs to infer.log and acc.log.
USAGE="[MINDIR_PATH] [DATA_PATH] [DVPP](optional) [DEVICE_TYPE](optional) [DEVICE_ID](optional) [--key=value ...]  (env: MINDSPORE_PATH or MS_LITE_HOME)"
source "$(dirname "${BASH_SOURCE[0]}")/launch_common.sh"

split_args "$@"
check_count 2 3 4 5
resolve_file MINDIR_PATH "${POS[0]}" MINDIR
[[ -d "${POS[1]}" ]] || fail "DATA_PATH not found: '${POS[1]}'"
DATA=$(cd "${POS[1]}" && pwd)
DVPP=${POS[2]:-CPU}
DEVICE_TYPE=${POS[3]:-Ascend}
DEVICE_ID=${POS[4]:-0}
[[ "$DVPP" == CPU || "$DVPP" == DVPP ]] || fail "DVPP must be CPU or DVPP, got '$DVPP'"
[[ "$DEVICE_TYPE" == Ascend || "$DEVICE_TYPE" == CPU || "$DEVICE_TYPE" == GPU ]] \
    || fail "DEVICE_TYPE must be Ascend, CPU or GPU, got '$DEVICE_TYPE'"
check_int DEVICE_ID "$DEVICE_ID" 0
[[ "$DVPP" == CPU || "$DEVICE_TYPE" == Ascend ]] || fail "DVPP pre-processing needs DEVICE_TYPE Ascend"
check_python

bash "$ROOT/ascend310_infer/build.sh" || exit 1

rm -rf result_Files time_Result
echo "$SCRIPT_NAME: running $MINDIR on $DATA ($DEVICE_TYPE $DEVICE_ID, $DVPP pre-processing); log in $(pwd)/infer.log"
"$ROOT/ascend310_infer/out/main" --mindir_path="$MINDIR" --dataset_path="$DATA" --device_type="$DEVICE_TYPE" \
    --device_id="$DEVICE_ID" --cpu_dvpp="$DVPP" --aipp_path="$ROOT/ascend310_infer/aipp.cfg" \
    --result_path=./result_Files --time_path=./time_Result &> infer.log \
    || { echo "$SCRIPT_NAME: inference failed: $(grep -m1 '^error:' infer.log || tail -n1 infer.log)" >&2; exit 1; }
tail -n1 infer.log

set -o pipefail
python "$ROOT/postprocess.py" --result_path=./result_Files --img_path="$DATA" --file_name="$MINDIR" "${EXTRA[@]}" 2>&1 | tee acc.log
