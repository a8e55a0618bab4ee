#!/bin/bash
# Data-parallel training on the Ascend NPUs of one server, started with an HCCL rank table.
#
#   bash scripts/run_distribute_train.sh [DEVICE_NUM] [EPOCH_SIZE] [LR] [DATASET] [RANK_TABLE_FILE] [CONFIG_PATH] \
#       [PRE_TRAINED](optional) [PRE_TRAINED_EPOCH_SIZE](optional) [--key=value ...](optional)
#   e.g. bash scripts/run_distribute_train.sh 8 500 0.2 coco /data/hccl_8p.json config/ssd300.yaml
#
# The rank table is made with the model zoo's hccl_tools (utils/hccl_tools/hccl_tools.py). Rank i runs on
# NPU i from the current folder and logs to LOG<i>/log.txt; checkpoints go to
# <checkpoint_path>/ckpt_<i>. LR is used as given (batch_size is per device). Further --key=value
# arguments go to train.py. The script waits for every rank and fails if any rank fails.
USAGE="[DEVICE_NUM] [EPOCH_SIZE] [LR] [DATASET] [RANK_TABLE_FILE] [CONFIG_PATH] [PRE_TRAINED](optional) \
[PRE_TRAINED_EPOCH_SIZE](optional) [--key=value ...]"
source "$(dirname "${BASH_SOURCE[0]}")/launch_common.sh"

# rank_table_devices FILE: the number of devices a version 1.0 rank table lists (empty for an older
# layout); status 2 when FILE is not JSON.
rank_table_devices() {
    python -c 'import json, sys
try:
    table = json.load(open(sys.argv[1]))
except ValueError:
    sys.exit(2)
try:
    print(sum(len(server["device"]) for server in table["server_list"]))
except (KeyError, TypeError):
    pass' "$1"
}

PRE_TRAINED=""
split_args "$@"
check_count 6 8
check_int DEVICE_NUM "${POS[0]}" 1 8
check_int EPOCH_SIZE "${POS[1]}" 1
check_lr "${POS[2]}"
check_dataset "${POS[3]}"
resolve_file RANK_TABLE_FILE "${POS[4]}" RANK_TABLE
resolve_file CONFIG_PATH "${POS[5]}" CONFIG root
if [[ ${#POS[@]} -eq 8 ]]; then
    resolve_file PRE_TRAINED "${POS[6]}" PRE_TRAINED
    check_int PRE_TRAINED_EPOCH_SIZE "${POS[7]}" 0
fi
check_python
DEVICE_NUM=${POS[0]}
LISTED=$(rank_table_devices "$RANK_TABLE") || fail "RANK_TABLE_FILE '$RANK_TABLE' is not a JSON rank table"
if [[ -n "$LISTED" && "$LISTED" -ne "$DEVICE_NUM" ]]; then
    fail "RANK_TABLE_FILE lists $LISTED devices but DEVICE_NUM is $DEVICE_NUM"
fi

DEVICE_TARGET=Ascend
train_args "${POS[1]}" "${POS[2]}" "${POS[3]}" "$CONFIG" "$PRE_TRAINED" "${POS[7]}"
build_mindrecord

export RANK_SIZE=$DEVICE_NUM RANK_TABLE_FILE=$RANK_TABLE MINDSPORE_HCCL_CONFIG_PATH=$RANK_TABLE
PIDS=()
for ((i = 0; i < DEVICE_NUM; i++)); do
    mkdir -p "LOG$i"
    DEVICE_ID=$i RANK_ID=$i python "$ROOT/train.py" --run_distribute=True --device_id=$i "${TRAIN_ARGS[@]}" \
        > "LOG$i/log.txt" 2>&1 &
    PIDS+=($!)
    echo "rank $i on device $i: log $(pwd)/LOG$i/log.txt"
done
FAILED=()
for ((i = 0; i < DEVICE_NUM; i++)); do
    wait "${PIDS[$i]}" || FAILED+=("$i")
done
if [[ ${#FAILED[@]} -gt 0 ]]; then
    echo "$SCRIPT_NAME: rank(s) ${FAILED[*]} failed; see LOG${FAILED[0]}/log.txt" >&2
    exit 1
fi
echo "$SCRIPT_NAME: all $DEVICE_NUM ranks finished"
