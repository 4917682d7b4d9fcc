#!/usr/bin/python3
"""The peer for benchmarks/wordnet_vs_pytorch.sh: the embed_bag model on the WordNet lexname
task in PyTorch 1.13 (Debian python3-torch), as mpiflow's jobs/wordnet_lexname.ini trains it:
EmbeddingBag(33264, 64, mean, sparse) -> Linear(64, 128) -> ReLU -> Linear(128, 45), softmax
cross-entropy, batch 64, SparseAdam for the table and Adam for the rest (lr 0.001), one thread.

Reads the task from the HDF5 file `mpiflow-data convert --from wordnet-lexname` writes (the same
examples, ids as float32 with -1 padding). Prints one line:
  pytorch: steps=N samples_per_sec=X test_accuracy=A
samples/s over the steps after the first 20 (as mpiflow's summary), evaluation excluded.
"""
import argparse
import time

import h5py
import numpy as np
import torch


def bags(features):
    """Each example's word ids (the -1 padding dropped), as int64 arrays."""
    ids = features.astype(np.int64)
    return [row[row >= 0] for row in ids]


def batch_of(examples, order):
    """The flat ids and the offsets of EmbeddingBag's input for the examples in `order`."""
    parts = [examples[i] for i in order]
    lengths = np.fromiter((len(p) for p in parts), dtype=np.int64, count=len(parts))
    offsets = np.zeros(len(parts), dtype=np.int64)
    np.cumsum(lengths[:-1], out=offsets[1:])
    flat = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    return torch.from_numpy(flat), torch.from_numpy(offsets)


class EmbedBag(torch.nn.Module):
    def __init__(self, vocab, classes):
        super().__init__()
        self.embed = torch.nn.EmbeddingBag(vocab, 64, mode="mean", sparse=True)
        self.hidden = torch.nn.Linear(64, 128)
        self.out = torch.nn.Linear(128, classes)

    def forward(self, flat, offsets):
        return self.out(torch.relu(self.hidden(self.embed(flat, offsets))))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="HDF5 from mpiflow-data convert")
    ap.add_argument("--steps", type=int, default=1653, help="training steps (1653: one epoch)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--eval", action="store_true", help="test accuracy after the last step")
    ap.add_argument("--seed", type=int, default=42)
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    with h5py.File(a.data, "r") as f:
        train_x, train_y = bags(f["/train/features"][()]), f["/train/labels"][()]
        test_x, test_y = bags(f["/test/features"][()]), f["/test/labels"][()]
        classes = int(f["/train"].attrs.get("num_classes", int(train_y.max()) + 1))
    vocab = 1 + max(int(x.max()) for x in train_x + test_x if len(x))
    vocab = max(vocab, 33264)
    model = EmbedBag(vocab, classes)
    sparse = torch.optim.SparseAdam(list(model.embed.parameters()), lr=1e-3)
    dense = torch.optim.Adam(list(model.hidden.parameters()) + list(model.out.parameters()),
                             lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    labels = torch.from_numpy(train_y.astype(np.int64))
    rng = np.random.default_rng(a.seed)
    order = rng.permutation(len(train_x))
    at, timed_from, start = 0, min(20, a.steps // 2), None
    for step in range(a.steps):
        if step == timed_from:
            start = time.perf_counter()
        if at + a.batch_size > len(order):
            order, at = rng.permutation(len(train_x)), 0
        idx = order[at:at + a.batch_size]
        at += a.batch_size
        flat, offsets = batch_of(train_x, idx)
        loss = loss_fn(model(flat, offsets), labels[idx])
        sparse.zero_grad()
        dense.zero_grad()
        loss.backward()
        sparse.step()
        dense.step()
    seconds = time.perf_counter() - start
    rate = (a.steps - timed_from) * a.batch_size / seconds
    accuracy = 0.0
    if a.eval:
        with torch.no_grad():
            correct = 0
            for lo in range(0, len(test_x), 1000):
                flat, offsets = batch_of(test_x, range(lo, min(lo + 1000, len(test_x))))
                pred = model(flat, offsets).argmax(1).numpy()
                correct += int((pred == test_y[lo:lo + 1000]).sum())
            accuracy = correct / len(test_x)
    print(f"pytorch: steps={a.steps} samples_per_sec={rate:.1f} test_accuracy={accuracy:.4f}")


if __name__ == "__main__":
    main()
