#!/bin/bash
# Data-parallel training on the GPUs of one machine, started with OpenMPI's mpirun (NCCL all-reduce).
#
#   bash scripts/run_distribute_train_gpu.sh [DEVICE_NUM] [EPOCH_SIZE] [LR] [DATASET] [CONFIG_PATH] \
#       [PRE_TRAINED](optional) [PRE_TRAINED_EPOCH_SIZE](optional) [--key=value ...](optional)
#   e.g. bash scripts/run_distribute_train_gpu.sh 8 500 0.2 coco config/ssd300.yaml
#
# Needs OpenMPI, NCCL and a MindSpore build with the GPU backend (2.3.x). This is for GPU only: on the
# CPU, MindSpore cannot initialise communication under mpirun ("Failed to initialize communication
# library on device side"); use run_distribute_train_msrun.sh there. Rank i uses GPU i (its local rank),
# runs from the current folder and logs to LOG<i>/log.txt; checkpoints go to <checkpoint_path>/ckpt_<i>.
# LR is used as given (batch_size is per device). Further --key=value arguments go to train.py.
USAGE="[DEVICE_NUM] [EPOCH_SIZE] [LR] [DATASET] [CONFIG_PATH] [PRE_TRAINED](optional) \
[PRE_TRAINED_EPOCH_SIZE](optional) [--key=value ...]"
source "$(dirname "${BASH_SOURCE[0]}")/launch_common.sh"

split_args "$@"
check_train_args DEVICE_NUM 1
command -v mpirun >/dev/null 2>&1 \
    || fail "mpirun not found: install OpenMPI (GPU with NCCL only; on CPU use run_distribute_train_msrun.sh)"
check_python

DEVICE_TARGET=GPU
train_args "${POS[1]}" "${POS[2]}" "${POS[3]}" "$CONFIG" "$PRE_TRAINED" "${POS[6]}"
build_mindrecord

MPI_ARGS=(-n "${POS[0]}")
[[ $(id -u) -eq 0 ]] && MPI_ARGS+=(--allow-run-as-root)
echo "$SCRIPT_NAME: starting ${POS[0]} ranks; logs in $(pwd)/LOG<rank>/log.txt"
# Each rank sends its output to LOG<rank>/log.txt; "$@" inside bash -c is the python command below.
TO_RANK_LOG='mkdir -p "LOG$OMPI_COMM_WORLD_RANK" && exec "$@" > "LOG$OMPI_COMM_WORLD_RANK/log.txt" 2>&1'
mpirun "${MPI_ARGS[@]}" bash -c "$TO_RANK_LOG" \
    rank python "$ROOT/train.py" --run_distribute=True "${TRAIN_ARGS[@]}" \
    || { echo "$SCRIPT_NAME: a rank failed; see LOG<rank>/log.txt" >&2; exit 1; }
echo "$SCRIPT_NAME: all ${POS[0]} ranks finished"
