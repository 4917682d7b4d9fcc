// HDF5 checkpoints: the file layout in checkpoint.h, every HDF5 call checked and turned into a
// Status that names the file and the object. HDF5's own error printing is switched off; its
// innermost message is appended to ours instead. Handles are closed by small RAII wrappers.
#include "mpiflow/checkpoint.h"

#include <fcntl.h>
#include <hdf5.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <vector>

#include "checkpoint_header.h"
#include "hdf5_util.h"

namespace mpiflow {

namespace {

using hdf5_util::Handle;
using hdf5_util::Hdf5Error;
using hdf5_util::QuietHdf5;

// IEEE binary16 as an HDF5 float type (h5py reads it as numpy float16).
hid_t NewHalfType() {
  hid_t t = H5Tcopy(H5T_IEEE_F32LE);
  H5Tset_fields(t, 15, 10, 5, 0, 10);
  H5Tset_size(t, 2);
  H5Tset_ebias(t, 15);
  return t;
}

// The HDF5 memory type of a dtype (a new type id for float16; the caller closes it).
hid_t MemoryType(DType d) {
  switch (d) {
    case DType::kFloat32:
      return H5Tcopy(H5T_NATIVE_FLOAT);
    case DType::kFloat64:
      return H5Tcopy(H5T_NATIVE_DOUBLE);
    case DType::kInt32:
      return H5Tcopy(H5T_NATIVE_INT32);
    case DType::kInt64:
      return H5Tcopy(H5T_NATIVE_INT64);
    case DType::kFloat16:
      return NewHalfType();
    case DType::kBool:
      return H5Tcopy(H5T_NATIVE_UINT8);
    default:
      return -1;
  }
}

// The dtype a stored dataset type stands for (bool needs the "dtype" attribute to tell it from
// uint8, which mpiflow does not otherwise have).
StatusOr<DType> DTypeOfStored(hid_t type, const std::string& dtype_attr) {
  if (!dtype_attr.empty()) return ParseDType(dtype_attr);
  const H5T_class_t cls = H5Tget_class(type);
  const size_t size = H5Tget_size(type);
  if (cls == H5T_FLOAT && size == 4) return DType::kFloat32;
  if (cls == H5T_FLOAT && size == 8) return DType::kFloat64;
  if (cls == H5T_FLOAT && size == 2) return DType::kFloat16;
  if (cls == H5T_INTEGER && size == 4 && H5Tget_sign(type) == H5T_SGN_2) return DType::kInt32;
  if (cls == H5T_INTEGER && size == 8 && H5Tget_sign(type) == H5T_SGN_2) return DType::kInt64;
  return InvalidArgument("an HDF5 type of class ", static_cast<int>(cls), " and size ", size,
                         " that mpiflow has no dtype for");
}

Status WriteStringAttribute(hid_t obj, const std::string& name, const std::string& value,
                            const std::string& path) {
  Handle type(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(type.get(), std::max<size_t>(1, value.size()));
  H5Tset_strpad(type.get(), H5T_STR_NULLPAD);
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  Handle attr(H5Acreate2(obj, name.c_str(), type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT),
              H5Aclose);
  if (!attr.ok() || H5Awrite(attr.get(), type.get(), value.c_str()) < 0) {
    return Hdf5Error(Code::kUnavailable, "checkpoint", path, "cannot write attribute '", name, "'");
  }
  return Status::OK();
}

Status WriteInt64Attribute(hid_t obj, const std::string& name, int64_t value,
                           const std::string& path) {
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  Handle attr(H5Acreate2(obj, name.c_str(), H5T_STD_I64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT),
              H5Aclose);
  if (!attr.ok() || H5Awrite(attr.get(), H5T_NATIVE_INT64, &value) < 0) {
    return Hdf5Error(Code::kUnavailable, "checkpoint", path, "cannot write attribute '", name, "'");
  }
  return Status::OK();
}

StatusOr<std::string> ReadStringAttribute(hid_t attr, const std::string& what,
                                          const std::string& path) {
  Handle type(H5Aget_type(attr), H5Tclose);
  if (!type.ok() || H5Tget_class(type.get()) != H5T_STRING) {
    return Hdf5Error(Code::kDataLoss, "checkpoint", path, what, " is not a string");
  }
  if (H5Tis_variable_str(type.get()) > 0) {
    char* s = nullptr;
    Handle mem(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(mem.get(), H5T_VARIABLE);
    if (H5Aread(attr, mem.get(), &s) < 0) {
      return Hdf5Error(Code::kDataLoss, "checkpoint", path, "cannot read ", what);
    }
    std::string out = s ? s : "";
    H5free_memory(s);
    return out;
  }
  std::string out(H5Tget_size(type.get()), '\0');
  if (H5Aread(attr, type.get(), out.data()) < 0) {
    return Hdf5Error(Code::kDataLoss, "checkpoint", path, "cannot read ", what);
  }
  out.resize(std::strlen(out.c_str()));
  return out;
}

StatusOr<int64_t> ReadInt64Attribute(hid_t attr, const std::string& what, const std::string& path) {
  int64_t v = 0;
  Handle type(H5Aget_type(attr), H5Tclose);
  if (!type.ok() || H5Tget_class(type.get()) != H5T_INTEGER ||
      H5Aread(attr, H5T_NATIVE_INT64, &v) < 0) {
    return Hdf5Error(Code::kDataLoss, "checkpoint", path, "cannot read ", what, " as an integer");
  }
  return v;
}

// Calls fn(name, attr id) for every attribute of obj.
template <typename Fn>
Status ForEachAttribute(hid_t obj, const std::string& path, Fn fn) {
  H5O_info_t info;
  if (H5Oget_info2(obj, &info, H5O_INFO_NUM_ATTRS) < 0) {
    return Hdf5Error(Code::kDataLoss, "checkpoint", path, "cannot list attributes");
  }
  for (hsize_t i = 0; i < info.num_attrs; ++i) {
    Handle attr(H5Aopen_by_idx(obj, ".", H5_INDEX_NAME, H5_ITER_INC, i, H5P_DEFAULT, H5P_DEFAULT),
                H5Aclose);
    if (!attr.ok())
      return Hdf5Error(Code::kDataLoss, "checkpoint", path, "cannot open attribute ", i);
    char name[256];
    H5Aget_name(attr.get(), sizeof(name), name);
    MPIFLOW_RETURN_IF_ERROR(fn(std::string(name), attr.get()));
  }
  return Status::OK();
}

Status WriteVariableDataset(hid_t file, const std::string& group, const std::string& name,
                            const Tensor& t, const RowSlice* slice, const std::string& path) {
  if (!t.allocated()) {
    return InvalidArgument("checkpoint '", path, "': variable '", name, "' has no value yet");
  }
  std::vector<hsize_t> dims(t.shape().dims().begin(), t.shape().dims().end());
  Handle space(dims.empty() ? H5Screate(H5S_SCALAR)
                            : H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr),
               H5Sclose);
  Handle mem_type(MemoryType(t.dtype()), H5Tclose);
  if (!mem_type.ok()) {
    return InvalidArgument("checkpoint '", path, "': variable '", name, "' has dtype ",
                           DTypeName(t.dtype()), ", which checkpoints do not store");
  }
  // Stored little-endian whatever the machine: the native types are LE on every target here.
  Handle lcpl(H5Pcreate(H5P_LINK_CREATE), H5Pclose);
  H5Pset_create_intermediate_group(lcpl.get(), 1);
  const std::string object = group + "/" + name;
  Handle ds(H5Dcreate2(file, object.c_str(), mem_type.get(), space.get(), lcpl.get(), H5P_DEFAULT,
                       H5P_DEFAULT),
            H5Dclose);
  if (!ds.ok())
    return Hdf5Error(Code::kUnavailable, "checkpoint", path, "cannot create '", object, "'");
  if (t.num_elements() > 0 &&
      H5Dwrite(ds.get(), mem_type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, t.raw()) < 0) {
    return Hdf5Error(Code::kUnavailable, "checkpoint", path, "cannot write '", object, "'");
  }
  if (slice) {
    if (t.shape().rank() < 1 || slice->first < 0 || slice->first + t.shape().dim(0) > slice->rows) {
      return InvalidArgument("checkpoint '", path, "': variable '", name, "' ",
                             t.shape().ToString(), " is not a slice of rows from ", slice->first,
                             " of ", slice->rows);
    }
    MPIFLOW_RETURN_IF_ERROR(WriteInt64Attribute(ds.get(), "first_row", slice->first, path));
    MPIFLOW_RETURN_IF_ERROR(WriteInt64Attribute(ds.get(), "table_rows", slice->rows, path));
  }
  return WriteStringAttribute(ds.get(), "dtype", DTypeName(t.dtype()), path);
}

Status FsyncPath(const std::string& p, bool directory) {
  const int fd = ::open(p.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0)
    return Status(Code::kUnavailable,
                  StrCat("cannot open '", p, "' to fsync it: ", std::strerror(errno)));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) {
    return Status(Code::kUnavailable, StrCat("fsync of '", p, "' failed: ", std::strerror(err)));
  }
  return Status::OK();
}

// The crash points of one write, told to a test's FaultHooks: after each dataset, after the
// flush, after the fsync, after the rename.
class CrashPoints {
 public:
  explicit CrashPoints(FaultHooks* hooks) : hooks_(hooks) {}
  void Reached() {
    if (hooks_) hooks_->AtCheckpointCrashPoint();
  }

 private:
  FaultHooks* hooks_;
};

std::string DirectoryOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

}  // namespace

Status WriteCheckpoint(const std::string& path, const Checkpoint& c, FaultHooks* hooks) {
  QuietHdf5();
  CrashPoints crash(hooks);
  const std::string tmp = StrCat(path, ".tmp.", ::getpid());
  {
    Handle fcpl(H5Pcreate(H5P_FILE_CREATE), H5Pclose);
    if (!fcpl.ok() || H5Pset_userblock(fcpl.get(), kCheckpointHeaderBytes) < 0) {
      return Hdf5Error(Code::kInternal, "checkpoint", path, "cannot set up its user block");
    }
    Handle file(H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, fcpl.get(), H5P_DEFAULT), H5Fclose);
    if (!file.ok()) {
      return Hdf5Error(Code::kUnavailable, "checkpoint", path, "cannot create the temporary file '",
                       tmp, "' (is the directory there and writable?)");
    }
    Status s = [&]() -> Status {
      MPIFLOW_RETURN_IF_ERROR(WriteStringAttribute(file.get(), "format", kCheckpointFormat, path));
      MPIFLOW_RETURN_IF_ERROR(
          WriteInt64Attribute(file.get(), "format_version", kCheckpointFormatVersion, path));
      for (const char* group : {"/variables", "/slots", "/job", "/state"}) {
        Handle g(H5Gcreate2(file.get(), group, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose);
        if (!g.ok())
          return Hdf5Error(Code::kUnavailable, "checkpoint", path, "cannot create '", group, "'");
        if (std::string(group) == "/job") {
          for (const auto& [k, v] : c.attributes) {
            MPIFLOW_RETURN_IF_ERROR(WriteStringAttribute(g.get(), k, v, path));
          }
        } else if (std::string(group) == "/state") {
          for (const auto& [k, v] : c.counters) {
            MPIFLOW_RETURN_IF_ERROR(WriteInt64Attribute(g.get(), k, v, path));
          }
        }
      }
      std::set<std::string> names;
      for (const auto& [name, t] : c.variables) {
        if (!names.insert(name).second) {
          return InvalidArgument("checkpoint '", path, "': variable '", name, "' given twice");
        }
      }
      for (const auto& [name, t] : c.variables) {
        // A variable named under another one ("dense_1/kernel/adam_m" under "dense_1/kernel")
        // is an optimizer slot: HDF5 cannot make "dense_1/kernel" both a dataset and a group,
        // so slots live in /slots, at the same relative name.
        bool slot = false;
        for (size_t at = name.find('/'); at != std::string::npos; at = name.find('/', at + 1)) {
          slot = slot || names.count(name.substr(0, at));
        }
        auto slice = c.row_slices.find(name);
        MPIFLOW_RETURN_IF_ERROR(
            WriteVariableDataset(file.get(), slot ? "/slots" : "/variables", name, t,
                                 slice == c.row_slices.end() ? nullptr : &slice->second, path));
        crash.Reached();
      }
      if (H5Fflush(file.get(), H5F_SCOPE_GLOBAL) < 0) {
        return Hdf5Error(Code::kUnavailable, "checkpoint", path, "cannot flush '", tmp, "'");
      }
      return Status::OK();
    }();
    if (!s.ok()) {
      std::remove(tmp.c_str());
      return s;
    }
    // The close writes the rest (the superblock among it): a failure here must not get a
    // checksum over what did reach the disk.
    if (file.Close() < 0) {
      std::remove(tmp.c_str());
      return Hdf5Error(Code::kUnavailable, "checkpoint", path, "cannot close '", tmp,
                       "' (is the disk full?)");
    }
  }  // closed
  Status s = checkpoint_header::WriteHeader(tmp, path);
  if (!s.ok()) {
    std::remove(tmp.c_str());
    return s;
  }
  crash.Reached();
  s = FsyncPath(tmp, false);
  crash.Reached();
  if (s.ok() && std::rename(tmp.c_str(), path.c_str()) != 0) {
    s = Status(Code::kUnavailable,
               StrCat("cannot rename '", tmp, "' to '", path, "': ", std::strerror(errno)));
  }
  if (!s.ok()) {
    std::remove(tmp.c_str());
    return s;
  }
  crash.Reached();
  return FsyncPath(DirectoryOf(path), true);
}

StatusOr<Checkpoint> ReadCheckpoint(const std::string& path, ReadOptions options) {
  QuietHdf5();
  MPIFLOW_RETURN_IF_ERROR(checkpoint_header::CheckHeader(path, options));
  const ScopedCrashContext reading(hdf5_util::Hdf5ReadingContext("checkpoint", path));
  if (H5Fis_hdf5(path.c_str()) <= 0) {
    H5Eclear2(H5E_DEFAULT);
    return Status(Code::kDataLoss, StrCat("checkpoint '", path,
                                          "' is not an HDF5 file (or its superblock is damaged)"));
  }
  Handle file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  if (!file.ok()) {
    return Hdf5Error(Code::kDataLoss, "checkpoint", path, "cannot open it (truncated or damaged?)");
  }
  Checkpoint c;
  std::string format;
  int64_t version = -1;
  MPIFLOW_RETURN_IF_ERROR(ForEachAttribute(file.get(), path, [&](const std::string& n, hid_t a) {
    if (n == "format") {
      StatusOr<std::string> f = ReadStringAttribute(a, "attribute 'format'", path);
      if (!f.ok()) return f.status();
      format = *f;
    } else if (n == "format_version") {
      StatusOr<int64_t> v = ReadInt64Attribute(a, "attribute 'format_version'", path);
      if (!v.ok()) return v.status();
      version = *v;
    }
    return Status::OK();
  }));
  if (format != kCheckpointFormat) {
    return Status(Code::kInvalidArgument, StrCat("checkpoint '", path,
                                                 "' is an HDF5 file but not an mpiflow checkpoint "
                                                 "(its root has no format = '",
                                                 kCheckpointFormat, "' attribute)"));
  }
  if (version < 1 || version > kCheckpointFormatVersion) {
    return Status(Code::kInvalidArgument,
                  StrCat("checkpoint '", path, "' has format version ", version,
                         "; this mpiflow reads versions 1 to ", kCheckpointFormatVersion));
  }
  for (const char* group : {"/job", "/state"}) {
    Handle g(H5Gopen2(file.get(), group, H5P_DEFAULT), H5Gclose);
    if (!g.ok())
      return Hdf5Error(Code::kDataLoss, "checkpoint", path, "has no group '", group, "'");
    MPIFLOW_RETURN_IF_ERROR(ForEachAttribute(g.get(), path, [&](const std::string& n, hid_t a) {
      const std::string what = StrCat("attribute '", group, "/", n, "'");
      if (std::string(group) == "/job") {
        StatusOr<std::string> v = ReadStringAttribute(a, what, path);
        if (!v.ok()) return v.status();
        c.attributes[n] = *v;
      } else {
        StatusOr<int64_t> v = ReadInt64Attribute(a, what, path);
        if (!v.ok()) return v.status();
        c.counters[n] = *v;
      }
      return Status::OK();
    }));
  }
  if (options.metadata_only) return c;
  // Every dataset under /variables and /slots, depth first, in name order.
  struct Visit {
    std::vector<std::string> names;
  };
  std::vector<std::pair<std::string, std::string>> objects;  // (object path, variable name)
  for (const char* group : {"/variables", "/slots"}) {
    Handle g(H5Gopen2(file.get(), group, H5P_DEFAULT), H5Gclose);
    if (!g.ok())
      return Hdf5Error(Code::kDataLoss, "checkpoint", path, "has no group '", group, "'");
    Visit visit;
    if (H5Ovisit2(
            g.get(), H5_INDEX_NAME, H5_ITER_INC,
            [](hid_t, const char* name, const H5O_info_t* info, void* data) -> herr_t {
              if (info->type == H5O_TYPE_DATASET) static_cast<Visit*>(data)->names.push_back(name);
              return 0;
            },
            &visit, H5O_INFO_BASIC) < 0) {
      return Hdf5Error(Code::kDataLoss, "checkpoint", path, "cannot list '", group,
                       "' (truncated or damaged?)");
    }
    for (const std::string& n : visit.names) objects.emplace_back(StrCat(group, "/", n), n);
  }
  for (const auto& [object, name] : objects) {
    Handle ds(H5Dopen2(file.get(), object.c_str(), H5P_DEFAULT), H5Dclose);
    if (!ds.ok())
      return Hdf5Error(Code::kDataLoss, "checkpoint", path, "cannot open '", object, "'");
    std::string dtype_attr;
    if (H5Aexists(ds.get(), "dtype") > 0) {
      Handle a(H5Aopen(ds.get(), "dtype", H5P_DEFAULT), H5Aclose);
      StatusOr<std::string> d =
          ReadStringAttribute(a.get(), "'" + object + "' attribute dtype", path);
      if (!d.ok()) return d.status();
      dtype_attr = *d;
    }
    if (H5Aexists(ds.get(), "first_row") > 0) {  // a slice of a table's rows
      RowSlice slice;
      for (auto [attr, out] : {std::pair<const char*, int64_t*>{"first_row", &slice.first},
                               {"table_rows", &slice.rows}}) {
        Handle a(H5Aopen(ds.get(), attr, H5P_DEFAULT), H5Aclose);
        StatusOr<int64_t> v =
            ReadInt64Attribute(a.get(), StrCat("'", object, "' attribute ", attr), path);
        if (!v.ok()) return v.status();
        *out = *v;
      }
      c.row_slices[name] = slice;
    }
    Handle type(H5Dget_type(ds.get()), H5Tclose);
    StatusOr<DType> dtype = DTypeOfStored(type.get(), dtype_attr);
    if (!dtype.ok()) {
      return Status(Code::kInvalidArgument, StrCat("checkpoint '", path, "': '", object, "' is ",
                                                   dtype.status().message()));
    }
    Handle space(H5Dget_space(ds.get()), H5Sclose);
    const int rank = H5Sget_simple_extent_ndims(space.get());
    if (rank < 0)
      return Hdf5Error(Code::kDataLoss, "checkpoint", path, "cannot read the shape of '", object,
                       "'");
    std::vector<hsize_t> dims(rank);
    H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
    Tensor t(*dtype, Shape(std::vector<int64_t>(dims.begin(), dims.end())));
    Handle mem_type(MemoryType(*dtype), H5Tclose);
    if (t.num_elements() > 0 &&
        H5Dread(ds.get(), mem_type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, t.raw()) < 0) {
      return Hdf5Error(Code::kDataLoss, "checkpoint", path, "cannot read '", object,
                       "' (truncated?)");
    }
    c.variables.emplace_back(name, std::move(t));
  }
  return c;
}

Status CheckCheckpointMatches(const Checkpoint& c, const Graph& graph, const std::string& path,
                              const std::set<std::string>* only) {
  std::map<std::string, const Tensor*> stored;
  for (const auto& [name, t] : c.variables) stored[name] = &t;
  std::vector<std::string> missing, conflicts;
  std::set<std::string> expected;
  for (const VariableInfo& v : graph.variables()) {
    const Node* n = v.variable;
    if (only && !only->count(n->name())) continue;
    expected.insert(n->name());
    auto it = stored.find(n->name());
    if (it == stored.end()) {
      missing.push_back(n->name());
    } else if (it->second->dtype() != n->output_dtype(0) ||
               it->second->shape() != n->output_shape(0)) {
      auto slice = c.row_slices.find(n->name());
      conflicts.push_back(StrCat(
          n->name(), " (graph ", DTypeName(n->output_dtype(0)), n->output_shape(0).ToString(),
          ", checkpoint ", DTypeName(it->second->dtype()), it->second->shape().ToString(),
          slice == c.row_slices.end()
              ? std::string()
              : StrCat(": rows from ", slice->second.first, " of ", slice->second.rows,
                       ", one parameter server's part; a parameter-server run's resume and "
                       "mpiflow-predict of its shard 0 merge the parts"),
          ")"));
    }
  }
  std::vector<std::string> unexpected;
  for (const auto& [name, t] : c.variables) {
    if (!expected.count(name)) unexpected.push_back(name);
  }
  if (missing.empty() && unexpected.empty() && conflicts.empty()) return Status::OK();
  auto list = [](const std::vector<std::string>& v) {
    std::string s;
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + v[i];
    return s;
  };
  std::string msg = StrCat("checkpoint '", path, "' does not fit this graph:");
  if (!missing.empty()) msg += StrCat(" missing from the checkpoint: ", list(missing), ";");
  if (!unexpected.empty()) msg += StrCat(" not in the graph: ", list(unexpected), ";");
  if (!conflicts.empty()) msg += StrCat(" dtype or shape differs: ", list(conflicts), ";");
  msg.back() = '.';
  return InvalidArgument(msg, " Was it written by another model or options?");
}

StatusOr<std::vector<std::pair<std::string, Tensor>>> RestoreCheckpoint(
    const Checkpoint& c, const Graph& graph, const std::string& path,
    const std::set<std::string>* only) {
  MPIFLOW_RETURN_IF_ERROR(CheckCheckpointMatches(c, graph, path, only));
  return c.variables;
}

}  // namespace mpiflow
