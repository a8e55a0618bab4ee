# Shared by the training and evaluation scripts in this folder; sourced, not run.
#
# Each script sets USAGE, sources this file and calls split_args "$@". Positional arguments come
# first; everything from the first --key=value on is passed to train.py / eval.py unchanged.
# A bad argument ends the script with one line on stderr (what is wrong, then the usage) and status 1.

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$SCRIPT_DIR")
SCRIPT_NAME=$(basename "$0")

# fail MESSAGE: one line, non-zero exit.
fail() {
    echo "$SCRIPT_NAME: $1; usage: bash $SCRIPT_NAME $USAGE" >&2
    exit 1
}

# split_args ARGS...: POS gets the positional arguments, EXTRA the --key=value ones after them.
split_args() {
    POS=()
    EXTRA=()
    local arg
    for arg in "$@"; do
        if [[ "$arg" == -h || "$arg" == --help ]]; then
            echo "usage: bash $SCRIPT_NAME $USAGE"
            exit 0
        fi
        if [[ "$arg" == --* || ${#EXTRA[@]} -gt 0 ]]; then
            EXTRA+=("$arg")
        else
            POS+=("$arg")
        fi
    done
}

# check_count ALLOWED...: the number of positional arguments is one of ALLOWED.
check_count() {
    local allowed
    for allowed in "$@"; do
        [[ ${#POS[@]} -eq $allowed ]] && return 0
    done
    fail "expected $(echo "$*" | sed 's/ / or /g') arguments before any --key=value, got ${#POS[@]}"
}

# check_int NAME VALUE MIN [MAX]: VALUE is an integer in [MIN, MAX].
check_int() {
    local name=$1 value=$2 min=$3 max=$4 range="at least $3"
    [[ -n "$max" ]] && range="from $min to $max"
    if ! [[ "$value" =~ ^[0-9]{1,9}$ ]] || (( 10#$value < min )) \
        || { [[ -n "$max" ]] && (( 10#$value > max )); }; then
        fail "$name must be an integer $range, got '$value'"
    fi
}

# check_lr VALUE: a positive decimal number (0.05, 1e-3).
check_lr() {
    if ! [[ "$1" =~ ^([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$ ]] || ! awk "BEGIN{exit !($1 > 0)}"; then
        fail "LR must be a positive number such as 0.05, got '$1'"
    fi
}

# check_dataset VALUE: one of the dataset formats train.py knows.
check_dataset() {
    [[ "$1" == coco || "$1" == voc || "$1" == other ]] || fail "DATASET must be coco, voc or other, got '$1'"
}

# resolve_file NAME PATH VAR [ROOT_TOO]: VAR = absolute path of an existing file; with ROOT_TOO a path
# not found from the current folder is also looked for in the repository (config/ssd300.yaml).
resolve_file() {
    local name=$1 path=$2 var=$3 found=""
    if [[ -f "$path" ]]; then
        found=$(cd "$(dirname "$path")" && pwd)/$(basename "$path")
    elif [[ -n "$4" && "$path" != /* && -f "$ROOT/$path" ]]; then
        found=$ROOT/$path
    else
        fail "$name not found: '$path'"
    fi
    printf -v "$var" '%s' "$found"
}

# check_device_target: DEVICE_TARGET, when set, is Ascend, GPU or CPU.
check_device_target() {
    if [[ -n "$DEVICE_TARGET" && ! "$DEVICE_TARGET" =~ ^(Ascend|GPU|CPU)$ ]]; then
        fail "DEVICE_TARGET must be Ascend, GPU or CPU, got '$DEVICE_TARGET'"
    fi
}

# check_python: the python first on PATH has MindSpore (msrun and mpirun start that one).
check_python() {
    command -v python >/dev/null 2>&1 || fail "no python on PATH"
    python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('mindspore') is None)" \
        || fail "the python first on PATH ($(command -v python)) has no MindSpore; put the one that has it first"
}

# check_train_args FIRST_NAME FIRST_MIN: the positional arguments are FIRST EPOCH_SIZE LR DATASET
# CONFIG_PATH [PRE_TRAINED PRE_TRAINED_EPOCH_SIZE], FIRST an integer of at least FIRST_MIN (a device
# number or id); sets CONFIG and PRE_TRAINED (empty when not given) to absolute paths.
check_train_args() {
    PRE_TRAINED=""
    check_count 5 7
    check_int "$1" "${POS[0]}" "$2"
    check_int EPOCH_SIZE "${POS[1]}" 1
    check_lr "${POS[2]}"
    check_dataset "${POS[3]}"
    resolve_file CONFIG_PATH "${POS[4]}" CONFIG root
    if [[ ${#POS[@]} -eq 7 ]]; then
        resolve_file PRE_TRAINED "${POS[5]}" PRE_TRAINED
        check_int PRE_TRAINED_EPOCH_SIZE "${POS[6]}" 0
    fi
}

# train_args EPOCH_SIZE LR DATASET CONFIG [PRE_TRAINED PRE_TRAINED_EPOCH_SIZE]: TRAIN_ARGS for train.py.
train_args() {
    TRAIN_ARGS=(--epoch_size="$1" --lr="$2" --dataset="$3" --config_path="$4")
    if [[ -n "$5" ]]; then
        TRAIN_ARGS+=(--pre_trained="$5" --pre_trained_epoch_size="$6")
    fi
    if [[ -n "$DEVICE_TARGET" ]]; then
        TRAIN_ARGS+=(--device_target="$DEVICE_TARGET")
    fi
    TRAIN_ARGS+=("${EXTRA[@]}")
}

# build_mindrecord: convert the dataset once, before any rank starts (ranks then only read it).
build_mindrecord() {
    echo "$SCRIPT_NAME: preparing the MindRecord (python train.py --only_create_dataset=True)"
    python "$ROOT/train.py" --only_create_dataset=True "${TRAIN_ARGS[@]}" || exit 1
}
