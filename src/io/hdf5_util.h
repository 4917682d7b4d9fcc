// Helpers shared by the HDF5 readers and writers in src/io (checkpoints, datasets): a handle
// that closes itself, HDF5's innermost error message, and errors that name the file. Private to
// src/io.
#pragma once

#include <hdf5.h>

#include <string>

#include "mpiflow/crash_report.h"
#include "mpiflow/status.h"

namespace mpiflow {
namespace hdf5_util {

// An hid_t closed with `close` when it goes out of scope.
class Handle {
 public:
  Handle(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  ~Handle() {
    if (id_ >= 0) close_(id_);
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  hid_t get() const { return id_; }
  bool ok() const { return id_ >= 0; }
  // Closes now and says whether that worked (a file's close writes what is left of it).
  herr_t Close() {
    const herr_t rc = id_ >= 0 ? close_(id_) : 0;
    id_ = -1;
    return rc;
  }

 private:
  hid_t id_;
  herr_t (*close_)(hid_t);
};

// The innermost message of HDF5's error stack ("file signature not found"), or "".
inline std::string Hdf5Reason() {
  std::string reason;
  H5Ewalk2(
      H5E_DEFAULT, H5E_WALK_UPWARD,
      [](unsigned n, const H5E_error2_t* e, void* data) -> herr_t {
        if (n == 0 && e->desc) *static_cast<std::string*>(data) = e->desc;
        return 0;
      },
      &reason);
  H5Eclear2(H5E_DEFAULT);
  return reason;
}

// "<kind> '<path>': <what> (HDF5: <reason>)", e.g. kind "checkpoint" or "dataset file".
template <typename... Args>
Status Hdf5Error(Code code, const char* kind, const std::string& path, const Args&... what) {
  const std::string reason = Hdf5Reason();
  return Status(code, StrCat(kind, " '", path, "': ", what...,
                             reason.empty() ? std::string() : StrCat(" (HDF5: ", reason, ")")));
}

// What a crash report says while HDF5 reads `path` (a ScopedCrashContext's text): HDF5 1.10
// can crash on a damaged file, and its own tools crash on the same file.
inline std::string Hdf5ReadingContext(const char* kind, const std::string& path) {
  return StrCat("reading ", kind, " '", path,
                "' through HDF5, which can crash on a damaged file (if `h5dump -H ", path,
                "` crashes too, the file is damaged: copy or make it again)");
}

inline void QuietHdf5() {
  static const bool once = [] {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    return true;
  }();
  (void)once;
}

}  // namespace hdf5_util
}  // namespace mpiflow
