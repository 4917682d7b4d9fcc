#!/bin/sh
# Your own data, not images: word ids from NumPy (.npz) into HDF5, the built-in embed_bag model
# trained under mpirun -np 2, predictions that reproduce its accuracy, and (where ONNX is built)
# the ONNX export evaluated independently.
# usage: bag_of_words_test.sh DATA TRAIN PREDICT EXPORT|none PYTHON OUT_DIR MPIRUN...
set -eu
data=$1 train=$2 predict=$3 export=$4 python=$5 out=$6
shift 6
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$out"
mkdir -p "$out"
cd "$out"
# 5 topics of 10 words each (ids 10t..10t+9) and 150 common words (50..199): an example holds
# 1-2 words of its topic and 3-8 common ones, shuffled, padded with -1 to 12 slots; one label in
# ten is random, so accuracy stays below 1 and only the same model predicts the same.
"$python" - <<'PY'
import numpy as np
rng = np.random.default_rng(11)
def split(n):
    x = np.full((n, 12), -1, dtype=np.float32)
    y = rng.integers(0, 5, n)
    for i in range(n):
        words = list(rng.integers(0, 10, rng.integers(1, 3)) + 10 * y[i])
        words += list(rng.integers(50, 200, rng.integers(3, 9)))
        rng.shuffle(words)
        x[i, :len(words)] = words
    noisy = rng.random(n) < 0.1
    y[noisy] = rng.integers(0, 5, noisy.sum())
    return x, y.astype(np.int32)
x_train, y_train = split(3000)
x_test, y_test = split(500)
np.savez_compressed("words.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
PY
"$data" convert --from npz --train words.npz --test words.npz --output words.h5 2> /dev/null
"$data" info words.h5 | head -1
set -- "$@" -np 2
h5="--dataset hdf5 --data-dir words.h5"
# shellcheck disable=SC2086
"$@" "$train" --model embed_bag $h5 --epochs 3 --batch-size 50 --optimizer adam \
  --lr 0.005 --checkpoint-every 30 --output-dir run --log-every 1000 > train.txt
cat train.txt
acc=$(sed -n 's/.*test_accuracy=\([0-9.]*\).*/\1/p' train.txt)
awk -v a="$acc" 'BEGIN { exit !(a >= 0.85) }' || { echo "FAIL: test accuracy $acc < 0.85"; exit 1; }
# shellcheck disable=SC2086
"$@" "$predict" --model embed_bag $h5 --checkpoint run/checkpoints > predict.txt 2> /dev/null
got=$(sed -n 's/^accuracy=\([0-9.]*\) .*/\1/p' predict.txt)
[ "$got" = "$acc" ] || { echo "FAIL: mpiflow-predict accuracy=$got, training printed $acc"; exit 1; }
echo "mpiflow-predict: accuracy=$got, as trained"
if [ "$export" != none ]; then
  # shellcheck disable=SC2086
  "$export" --model embed_bag $h5 --checkpoint run/checkpoints --onnx bag.onnx \
    --test-data test_data --test-examples 50
  "$python" "$here/onnx_check.py" bag.onnx test_data
fi
echo "PASS: embed_bag at $acc"
