#!/bin/sh
# mpiflow-data convert --from npz reads what NumPy writes: archives from numpy.savez (stored)
# and numpy.savez_compressed (deflated) give the same HDF5 file, value for value, as the same
# arrays saved one per .npy file; a damaged archive is a clear error naming the file and member.
# usage: npz_test.sh DATA PYTHON OUT_DIR
set -eu
data=$1 python=$2 out=$3
rm -rf "$out"
mkdir -p "$out"
cd "$out"
"$python" - <<'PY'
import numpy as np
rng = np.random.default_rng(5)
arrays = {
    "x_train": rng.random((120, 6, 5, 2), dtype=np.float32),
    "y_train": rng.integers(0, 4, 120).astype(np.int64),
    "x_test": (rng.random((30, 6, 5, 2)) * 9).astype(np.float64),
    "y_test": rng.integers(0, 4, 30).astype(np.int32),
}
for k, v in arrays.items():
    np.save(k + ".npy", v)
np.savez("stored.npz", **arrays)
np.savez_compressed("deflated.npz", **arrays, notes=np.zeros(3))
np.savez("keys.npz", images=(arrays["x_train"] * 255).astype(np.uint8), classes=arrays["y_train"])
# damaged copies: the last 40 bytes cut; one byte of x_train's stored data flipped
blob = open("stored.npz", "rb").read()
open("truncated.npz", "wb").write(blob[:-40])
at = blob.index(b"\x93NUMPY") + 200
open("flipped.npz", "wb").write(blob[:at] + bytes([blob[at] ^ 0x55]) + blob[at + 1:])
PY
"$data" convert --from npy --train x_train.npy,y_train.npy --test x_test.npy,y_test.npy \
  --output npy.h5 2> /dev/null
for a in stored deflated; do
  "$data" convert --from npz --train $a.npz --test $a.npz --output $a.h5 2> /dev/null
  h5diff npy.h5 $a.h5  # no output and status 0: the same values
  echo "$a.npz: the same HDF5 as the .npy files"
done
"$data" convert --from npz --train keys.npz:images,classes --test keys.npz:images,classes \
  --output keys.h5 2> /dev/null
"$data" info keys.h5 > keys.txt
grep -q "^/train: 120 examples of (6, 5, 2) uint8" keys.txt || { cat keys.txt; exit 1; }
expect() {  # expect REGEX ARCHIVE[:KEYS]
  if "$data" convert --from npz --train "$2" --test "$2" --output bad.h5 2> err.txt; then
    echo "FAIL: '$2' converted"
    exit 1
  fi
  grep -q "$1" err.txt || { echo "FAIL: '$2': want '$1', got:"; cat err.txt; exit 1; }
  echo "$2: $(cat err.txt)"
}
expect "'keys.npz' has no array 'x_train' (it has: images, classes)" keys.npz
expect "'truncated.npz' is not a readable .npz (zip) archive: no end-of-central-directory" \
  truncated.npz
expect "'flipped.npz' is not a readable .npz (zip) archive: member 'x_train.npy' fails its CRC-32" \
  flipped.npz
expect "cannot open 'none.npz'" none.npz
expect "'x_train.npy' is not a readable .npz (zip) archive" x_train.npy
echo "PASS"
