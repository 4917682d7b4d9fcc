#!/bin/sh
# mpiflow-export writes a trained model as ONNX that an independent evaluator
# (tests/onnx_check.py: ONNX's checker, strict shape inference, NumPy from the operator specs)
# runs to the outputs mpiflow computes for the same examples.
# usage: export_test.sh TRAIN EXPORT PYTHON MODEL OUT_DIR
set -eu
train=$1 export=$2 python=$3 model=$4 out=$5
here=$(dirname "$0")
data="--dataset synthetic --synthetic-train 1024 --synthetic-test 64 --seed 3"
rm -rf "$out"
mkdir -p "$out"
# A few steps: batch_norm's moving statistics are away from (0, 1), the weights from their start.
# shellcheck disable=SC2086
"$train" --model "$model" $data --max-steps 8 --batch-size 32 --checkpoint-every 8 \
  --output-dir "$out/run" > "$out/train.txt" 2> "$out/train.err"
# shellcheck disable=SC2086
"$export" --model "$model" $data --checkpoint "$out/run/checkpoints" --onnx "$out/model.onnx" \
  --test-data "$out/test_data" --test-examples 20 > "$out/export.txt"
cat "$out/export.txt"
grep -q "checker=passed" "$out/export.txt"
grep -q "test_data=$out/test_data examples=20" "$out/export.txt"
if [ "$python" = none ]; then
  echo "no python3-onnx/python3-numpy: ONNX's checker in mpiflow-export alone"
else
  "$python" "$here/onnx_check.py" "$out/model.onnx" "$out/test_data" --tolerance 1e-4
fi
echo "PASS: $model"
