// Checkpoints as HDF5 files (C API of HDF5 1.10): one dataset per variable at its graph name
// (/variables/dense_1/kernel, /variables/global_step), optimizer slots at theirs under /slots
// (/slots/dense_1/kernel/adam_m: HDF5 cannot make a name both a dataset and a group), each with
// a "dtype" attribute; string attributes (job options, graph fingerprint) on /job; int64 counters
// (run counter, data position) on /state; a format name and version on the root. Files read as
// they are with h5dump and h5py. Writing is atomic: a temporary file in the same directory,
// flushed and fsynced, then renamed over the target, so a crash at any moment leaves the
// previous file whole.
// Checked: the file starts with a 512-byte HDF5 user block (HDF5 and h5py skip it) whose first
// line is "mpiflow-checkpoint 2 size=<bytes> crc32=<hex>", the CRC of everything after the
// block. A reader checks size and CRC before HDF5 parses a byte, so a damaged or truncated file
// is refused with the reason (HDF5 1.10 can crash on malformed files). Format 1 files (no
// block) are read only when trusted (ReadOptions, `mpiflow-ckpt upgrade`).
// Not the policy (names, `latest`, rotation, resume): that is CheckpointManager's
// (checkpoint_manager.h); not a Session's variables: callers snapshot and write those.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "mpiflow/fault_hooks.h"
#include "mpiflow/graph.h"
#include "mpiflow/status.h"
#include "mpiflow/tensor.h"

namespace mpiflow {

inline constexpr const char* kCheckpointFormat = "mpiflow-checkpoint";
inline constexpr int64_t kCheckpointFormatVersion = 2;
inline constexpr int64_t kCheckpointHeaderBytes = 512;  // the user block

// A variable of which a file holds some rows only (a parameter server's part of a table split
// by rows): its rows [first, first + n) of `rows`, n being the stored tensor's first dimension.
struct RowSlice {
  int64_t first = 0, rows = 0;
};

struct Checkpoint {
  std::vector<std::pair<std::string, Tensor>> variables;  // by graph name, in the order written
  std::map<std::string, std::string> attributes;          // stored on /job
  std::map<std::string, int64_t> counters;                // stored on /state
  // The variables stored as a slice of rows, by name (attributes first_row and table_rows of
  // their datasets); CheckpointManager's merge of a run's shards puts the slices together.
  std::map<std::string, RowSlice> row_slices;
};

// Writes `c` to `path` atomically (temporary file, fsync, rename, fsync of the directory).
// Every dtype (float16 as IEEE half, bool as uint8), any shape including scalars and empty ones.
// `hooks` (tests only) is told of each crash point.
Status WriteCheckpoint(const std::string& path, const Checkpoint& c, FaultHooks* hooks = nullptr);
struct ReadOptions {
  // Read a format 1 file, which has no checksum, as it is (mpiflow-ckpt upgrade: the user says
  // the file is sound). Otherwise such a file is refused, naming that command.
  bool trust_unchecked = false;
  // Attributes and counters only, no variables (a resume's first look, before the graph).
  bool metadata_only = false;
};
// Reads a whole checkpoint. Errors name the file and the object: missing, damaged (size or
// checksum), not an mpiflow checkpoint, a newer format version, a dataset of an unknown type.
StatusOr<Checkpoint> ReadCheckpoint(const std::string& path, ReadOptions options = {});

// What restoring `c` into `graph`'s variables would find wrong: every variable of the graph
// missing from the checkpoint, every checkpoint variable the graph lacks, and every dtype or
// shape conflict, in one message. OK when they match exactly. With `only`, the graph's
// variables outside it are not expected (a parameter server's shard holds only its own).
Status CheckCheckpointMatches(const Checkpoint& c, const Graph& graph, const std::string& path,
                              const std::set<std::string>* only = nullptr);
// CheckCheckpointMatches, then the (name, value) pairs to write into the graph's variables; the
// caller writes them (all or nothing: an error returns none).
StatusOr<std::vector<std::pair<std::string, Tensor>>> RestoreCheckpoint(
    const Checkpoint& c, const Graph& graph, const std::string& path,
    const std::set<std::string>* only = nullptr);

}  // namespace mpiflow
