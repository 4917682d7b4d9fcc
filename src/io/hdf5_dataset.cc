// Datasets in HDF5: /<split>/features (count, example...) as uint8 or float32, chunked by whole
// examples and deflate-compressed, /<split>/labels (count), a class count per split and
// optional class names on the file. Reads take a range of examples through a hyperslab
// selection, so a rank reads its part without the rest of the file. The older layout
// (/<split>/images uint8 (count, rows, cols)) is still read. Not the training-data policy
// (src/train/train_data.cc).
#include <hdf5.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <new>

#include "hdf5_util.h"
#include "mpiflow/data.h"

namespace mpiflow {

using hdf5_util::Handle;
using hdf5_util::Hdf5Error;

namespace {
constexpr const char* kKind = "dataset file";

// A scalar attribute of `obj` written as `type` from `mem_type`.
bool WriteScalarAttr(hid_t obj, const char* name, hid_t type, hid_t mem_type, const void* value) {
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  Handle attr(H5Acreate2(obj, name, type, space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  return attr.ok() && H5Awrite(attr.get(), mem_type, value) >= 0;
}

// A scalar numeric attribute of `obj` read as `mem_type`; false when it is not there.
bool ReadScalarAttr(hid_t obj, const char* name, hid_t mem_type, void* value) {
  if (H5Aexists(obj, name) <= 0) return false;
  Handle attr(H5Aopen(obj, name, H5P_DEFAULT), H5Aclose);
  Handle space(attr.ok() ? H5Aget_space(attr.get()) : -1, H5Sclose);
  if (!space.ok() || H5Sget_simple_extent_npoints(space.get()) != 1) return false;
  return H5Aread(attr.get(), mem_type, value) >= 0;
}

// The file attribute `classes`: a 1-D array of strings (variable or fixed length).
StatusOr<std::vector<std::string>> ReadClassNames(hid_t file, const std::string& path) {
  std::vector<std::string> names;
  if (H5Aexists(file, "classes") <= 0) return names;
  Handle attr(H5Aopen(file, "classes", H5P_DEFAULT), H5Aclose);
  Handle type(attr.ok() ? H5Aget_type(attr.get()) : -1, H5Tclose);
  Handle space(attr.ok() ? H5Aget_space(attr.get()) : -1, H5Sclose);
  const hssize_t n = space.ok() ? H5Sget_simple_extent_npoints(space.get()) : -1;
  if (!type.ok() || H5Tget_class(type.get()) != H5T_STRING || n < 1 || n > (1 << 20)) {
    return Status(Code::kDataLoss,
                  StrCat(kKind, " '", path, "': attribute 'classes' must be 1 to 1048576 strings"));
  }
  if (H5Tis_variable_str(type.get()) > 0) {
    std::vector<char*> raw(static_cast<size_t>(n), nullptr);
    Handle mem(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(mem.get(), H5T_VARIABLE);
    if (H5Aread(attr.get(), mem.get(), raw.data()) < 0) {
      return Hdf5Error(Code::kDataLoss, kKind, path, "cannot read attribute 'classes'");
    }
    for (char* c : raw) names.emplace_back(c ? c : "");
    H5Dvlen_reclaim(mem.get(), space.get(), H5P_DEFAULT, raw.data());
  } else {
    const size_t width = H5Tget_size(type.get());
    if (width == 0 || width > 4096) {
      return Status(Code::kDataLoss, StrCat(kKind, " '", path, "': attribute 'classes' has ", width,
                                            "-byte strings (1 to 4096)"));
    }
    std::vector<char> raw(width * static_cast<size_t>(n));
    if (H5Aread(attr.get(), type.get(), raw.data()) < 0) {
      return Hdf5Error(Code::kDataLoss, kKind, path, "cannot read attribute 'classes'");
    }
    for (hssize_t i = 0; i < n; ++i) {
      const char* c = raw.data() + i * width;
      names.emplace_back(c, strnlen(c, width));
    }
  }
  return names;
}

// The attribute `classes` on `obj`, as fixed-length strings: HDF5 1.10 keeps variable-length
// ones in a global heap and crashes reading a damaged one (fuzz/README.md), so mpiflow never
// writes them.
bool WriteClassNames(hid_t obj, const std::vector<std::string>& class_names) {
  size_t width = 1;
  for (const std::string& n : class_names) width = std::max(width, n.size());
  std::vector<char> names(width * class_names.size(), '\0');  // (classes, width)
  for (size_t i = 0; i < class_names.size(); ++i) {
    std::copy(class_names[i].begin(), class_names[i].end(), names.begin() + i * width);
  }
  const hsize_t n = class_names.size();
  Handle type(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(type.get(), width);
  H5Tset_strpad(type.get(), H5T_STR_NULLPAD);
  Handle space(H5Screate_simple(1, &n, nullptr), H5Sclose);
  Handle attr(H5Acreate2(obj, "classes", type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT),
              H5Aclose);
  return attr.ok() && H5Awrite(attr.get(), type.get(), names.data()) >= 0;
}

}  // namespace

Status WriteHdf5Split(const std::string& path, const std::string& split, const Dataset& d,
                      int64_t chunk_examples, int compression) {
  hdf5_util::QuietHdf5();
  if (chunk_examples < 1 || compression < 0 || compression > 9) {
    return InvalidArgument("HDF5 dataset: chunk must be >= 1 example and compression 0-9, got ",
                           chunk_examples, " and ", compression);
  }
  // Create the file, or add the split to an existing one.
  const bool exists = H5Fis_hdf5(path.c_str()) > 0;
  H5Eclear2(H5E_DEFAULT);
  Handle file(exists ? H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT)
                     : H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT),
              H5Fclose);
  if (!file.ok()) return Hdf5Error(Code::kUnavailable, kKind, path, "cannot create or open it");
  Handle group(H5Gcreate2(file.get(), ("/" + split).c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
               H5Gclose);
  if (!group.ok()) {
    return Hdf5Error(Code::kUnavailable, kKind, path, "cannot create group '/", split,
                     "' (is it there already?)");
  }
  // features: (count, example...), chunks of whole examples
  std::vector<hsize_t> dims = {static_cast<hsize_t>(d.count)};
  for (int64_t x : d.example.dims()) dims.push_back(static_cast<hsize_t>(x));
  std::vector<hsize_t> chunk = dims;
  chunk[0] = static_cast<hsize_t>(std::max<int64_t>(1, std::min<int64_t>(chunk_examples, d.count)));
  const int rank = static_cast<int>(dims.size());
  Handle space(H5Screate_simple(rank, dims.data(), nullptr), H5Sclose);
  Handle dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  if (d.count > 0) {
    H5Pset_chunk(dcpl.get(), rank, chunk.data());
    if (compression > 0) H5Pset_deflate(dcpl.get(), static_cast<unsigned>(compression));
  }
  Handle features(H5Dcreate2(group.get(), "features", d.is_float ? H5T_IEEE_F32LE : H5T_STD_U8LE,
                             space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT),
                  H5Dclose);
  const void* values = d.is_float ? static_cast<const void*>(d.floats.data()) : d.bytes.data();
  if (!features.ok() ||
      (d.count > 0 && H5Dwrite(features.get(), d.is_float ? H5T_NATIVE_FLOAT : H5T_NATIVE_UINT8,
                               H5S_ALL, H5S_ALL, H5P_DEFAULT, values) < 0) ||
      !WriteScalarAttr(features.get(), "scale", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, &d.scale) ||
      !WriteScalarAttr(features.get(), "offset", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, &d.offset)) {
    return Hdf5Error(Code::kUnavailable, kKind, path, "cannot write '/", split, "/features'");
  }
  // labels: (count) int32
  Handle lspace(H5Screate_simple(1, dims.data(), nullptr), H5Sclose);
  Handle labels(H5Dcreate2(group.get(), "labels", H5T_STD_I32LE, lspace.get(), H5P_DEFAULT,
                           H5P_DEFAULT, H5P_DEFAULT),
                H5Dclose);
  if (!labels.ok() || (d.count > 0 && H5Dwrite(labels.get(), H5T_NATIVE_INT32, H5S_ALL, H5S_ALL,
                                               H5P_DEFAULT, d.labels.data()) < 0)) {
    return Hdf5Error(Code::kUnavailable, kKind, path, "cannot write '/", split, "/labels'");
  }
  const int32_t classes = d.num_classes;
  if (!WriteScalarAttr(group.get(), "num_classes", H5T_STD_I32LE, H5T_NATIVE_INT32, &classes)) {
    return Hdf5Error(Code::kUnavailable, kKind, path, "cannot write '/", split,
                     "' attribute num_classes");
  }
  if (!d.class_names.empty() && H5Aexists(file.get(), "classes") <= 0 &&
      !WriteClassNames(file.get(), d.class_names)) {
    return Hdf5Error(Code::kUnavailable, kKind, path, "cannot write attribute 'classes'");
  }
  if (H5Fflush(file.get(), H5F_SCOPE_GLOBAL) < 0) {
    return Hdf5Error(Code::kUnavailable, kKind, path, "cannot flush it");
  }
  return Status::OK();
}

StatusOr<int64_t> Hdf5SplitSize(const std::string& path, const std::string& split) {
  StatusOr<Dataset> none = ReadHdf5Split(path, split, 0, 0);  // reads the metadata only
  if (!none.ok()) return none.status();
  return none->source_count;
}

StatusOr<Dataset> ReadHdf5Split(const std::string& path, const std::string& split, int64_t begin,
                                int64_t count) {
  hdf5_util::QuietHdf5();
  const ScopedCrashContext reading(hdf5_util::Hdf5ReadingContext(kKind, path));
  if (H5Fis_hdf5(path.c_str()) <= 0) {
    H5Eclear2(H5E_DEFAULT);
    return Status(Code::kNotFound, StrCat(kKind, " '", path,
                                          "' is missing or not an HDF5 file (make one with "
                                          "mpiflow-data convert)"));
  }
  Handle file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  if (!file.ok()) return Hdf5Error(Code::kDataLoss, kKind, path, "cannot open it");
  const std::string group_name = "/" + split;
  if (H5Lexists(file.get(), group_name.c_str(), H5P_DEFAULT) <= 0) {
    H5Eclear2(H5E_DEFAULT);
    return Status(Code::kNotFound,
                  StrCat(kKind, " '", path, "' has no split '/", split, "' (try train or test)"));
  }
  // The features: `features`, or the older `images` (count, rows, cols) of one channel.
  const bool legacy = H5Lexists(file.get(), (group_name + "/features").c_str(), H5P_DEFAULT) <= 0 &&
                      H5Lexists(file.get(), (group_name + "/images").c_str(), H5P_DEFAULT) > 0;
  H5Eclear2(H5E_DEFAULT);
  const std::string features_name = group_name + (legacy ? "/images" : "/features");
  const std::string labels_name = group_name + "/labels";
  Handle features(H5Dopen2(file.get(), features_name.c_str(), H5P_DEFAULT), H5Dclose);
  Handle labels(H5Dopen2(file.get(), labels_name.c_str(), H5P_DEFAULT), H5Dclose);
  if (!features.ok() || !labels.ok()) {
    return Hdf5Error(Code::kDataLoss, kKind, path, "needs '", group_name, "/features' and '",
                     labels_name, "'");
  }
  Handle fspace(H5Dget_space(features.get()), H5Sclose);
  Handle lspace(H5Dget_space(labels.get()), H5Sclose);
  Handle ftype(H5Dget_type(features.get()), H5Tclose);
  Handle ltype(H5Dget_type(labels.get()), H5Tclose);
  const int rank = H5Sget_simple_extent_ndims(fspace.get());
  constexpr int kMaxRank = 8;
  if (rank < 2 || rank > kMaxRank || (legacy && rank != 3) ||
      H5Sget_simple_extent_ndims(lspace.get()) != 1) {
    return Status(Code::kDataLoss, StrCat(kKind, " '", path, "': '", features_name, "' must be ",
                                          legacy ? "(count, rows, cols)"
                                                 : "(count, ...) with 1 to 7 more dimensions",
                                          " and '", labels_name, "' (count)"));
  }
  const H5T_class_t fclass = H5Tget_class(ftype.get());
  if ((fclass != H5T_INTEGER && fclass != H5T_FLOAT) || H5Tget_class(ltype.get()) != H5T_INTEGER) {
    return Status(Code::kDataLoss, StrCat(kKind, " '", path, "': '", features_name,
                                          "' must hold numbers and '", labels_name, "' integers"));
  }
  // Element sizes a number has: a damaged type of 65531-byte floats sent HDF5's conversion
  // past its buffers (found by fuzz/hdf5_dataset_fuzzer.cc).
  const size_t fsize = H5Tget_size(ftype.get()), lsize = H5Tget_size(ltype.get());
  const auto plain = [](size_t n) { return n == 1 || n == 2 || n == 4 || n == 8; };
  if (!plain(fsize) || !plain(lsize) || (fclass == H5T_FLOAT && fsize < 4)) {
    return Status(Code::kDataLoss,
                  StrCat(kKind, " '", path, "': '", features_name, "' holds ", fsize, "-byte and '",
                         labels_name, "' ", lsize,
                         "-byte numbers: integers of 1, 2, 4 or 8 bytes, floats of 4 or 8"));
  }
  hsize_t dims[kMaxRank] = {}, ldims[1] = {0};
  H5Sget_simple_extent_dims(fspace.get(), dims, nullptr);
  H5Sget_simple_extent_dims(lspace.get(), ldims, nullptr);
  const int64_t total = static_cast<int64_t>(dims[0]);
  if (ldims[0] != dims[0]) {
    return Status(Code::kDataLoss, StrCat(kKind, " '", path, "': ", dims[0], " examples but ",
                                          ldims[0], " labels in '/", split, "'"));
  }
  if (count < 0) count = total - begin;
  if (begin < 0 || count < 0 || begin + count > total) {
    return InvalidArgument(kKind, " '", path, "': examples [", begin, ", ", begin + count,
                           ") are outside '/", split, "' (", total, " examples)");
  }
  // What the file declares is not trusted before it is allocated (a damaged header declared
  // petabytes: found by fuzz/hdf5_dataset_fuzzer.cc).
  Dataset d;
  std::vector<int64_t> example;
  hsize_t example_size = 1;
  for (int i = 1; i < rank; ++i) {
    if (dims[i] == 0 || dims[i] > (hsize_t{1} << 24) ||
        example_size * dims[i] > (hsize_t{1} << 28)) {
      return Status(Code::kDataLoss, StrCat(kKind, " '", path, "': '", features_name,
                                            "' has a dimension of ", dims[i], " after its ", i,
                                            " first: each must be 1 or more and an "
                                            "example at most 2^28 values"));
    }
    example_size *= dims[i];
    example.push_back(static_cast<int64_t>(dims[i]));
  }
  if (dims[0] > (hsize_t{1} << 40)) {
    return Status(Code::kDataLoss, StrCat(kKind, " '", path, "': '", features_name, "' declares ",
                                          dims[0], " examples (at most 2^40)"));
  }
  if (legacy) example.push_back(1);  // grayscale images: one channel
  d.example = Shape(example);
  d.count = count;
  d.source_count = total;
  d.is_float = !(fclass == H5T_INTEGER && H5Tget_size(ftype.get()) == 1 &&
                 H5Tget_sign(ftype.get()) == H5T_SGN_NONE);
  d.scale = d.is_float ? 1.0f : 1.0f / 255.0f;
  d.offset = 0.0f;
  float attr = 0;
  if (ReadScalarAttr(features.get(), "scale", H5T_NATIVE_FLOAT, &attr)) d.scale = attr;
  if (ReadScalarAttr(features.get(), "offset", H5T_NATIVE_FLOAT, &attr)) d.offset = attr;
  if (!std::isfinite(d.scale) || !std::isfinite(d.offset)) {
    return Status(Code::kDataLoss,
                  StrCat(kKind, " '", path, "': '", features_name, "' has scale ", d.scale,
                         " and offset ", d.offset, ": both must be finite"));
  }
  try {
    const size_t values = static_cast<size_t>(count) * static_cast<size_t>(example_size);
    if (d.is_float) {
      d.floats.resize(values);
    } else {
      d.bytes.resize(values);
    }
    d.labels.resize(static_cast<size_t>(count));
  } catch (const std::bad_alloc&) {
    return Status(Code::kUnavailable, StrCat(kKind, " '", path, "': ", count, " examples of ",
                                             d.example.ToString(), " from '/", split,
                                             "' do not fit in memory here (read a share of them "
                                             "per rank: --data-sharding local)"));
  }
  // Classes: the file's names, else the split's count, else the largest label + 1 (below).
  StatusOr<std::vector<std::string>> names = ReadClassNames(file.get(), path);
  if (!names.ok()) return names.status();
  d.class_names = std::move(*names);
  Handle group(H5Gopen2(file.get(), group_name.c_str(), H5P_DEFAULT), H5Gclose);
  int32_t classes = 0;
  bool declared = !d.class_names.empty();
  if (declared) {
    classes = static_cast<int32_t>(d.class_names.size());
  } else if (group.ok() && ReadScalarAttr(group.get(), "num_classes", H5T_NATIVE_INT32, &classes)) {
    declared = true;
  }
  if (declared && classes < 1) {
    return Status(Code::kDataLoss,
                  StrCat(kKind, " '", path, "': '/", split, "' declares ", classes, " classes"));
  }
  H5Eclear2(H5E_DEFAULT);
  // The hyperslab [begin, begin + count) of both datasets: only those chunks are read.
  hsize_t start[kMaxRank] = {static_cast<hsize_t>(begin)};
  hsize_t extent[kMaxRank];
  std::copy(dims, dims + rank, extent);
  extent[0] = static_cast<hsize_t>(count);
  if (count > 0) {
    Handle fmem(H5Screate_simple(rank, extent, nullptr), H5Sclose);
    Handle lmem(H5Screate_simple(1, extent, nullptr), H5Sclose);
    void* out = d.is_float ? static_cast<void*>(d.floats.data()) : d.bytes.data();
    if (H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, start, nullptr, extent, nullptr) < 0 ||
        H5Sselect_hyperslab(lspace.get(), H5S_SELECT_SET, start, nullptr, extent, nullptr) < 0 ||
        H5Dread(features.get(), d.is_float ? H5T_NATIVE_FLOAT : H5T_NATIVE_UINT8, fmem.get(),
                fspace.get(), H5P_DEFAULT, out) < 0 ||
        H5Dread(labels.get(), H5T_NATIVE_INT32, lmem.get(), lspace.get(), H5P_DEFAULT,
                d.labels.data()) < 0) {
      return Hdf5Error(Code::kDataLoss, kKind, path, "cannot read examples [", begin, ", ",
                       begin + count, ") of '/", split, "' (truncated or damaged?)");
    }
  }
  if (!declared) {
    // No count in the file: the largest label of the whole split + 1, the same for every
    // range a rank reads (the labels are small: read them all).
    std::vector<int32_t> all(static_cast<size_t>(total));
    Handle whole(H5Dget_space(labels.get()), H5Sclose);
    if (total > 0 &&
        H5Dread(labels.get(), H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, all.data()) < 0) {
      return Hdf5Error(Code::kDataLoss, kKind, path, "cannot read '", labels_name, "'");
    }
    int64_t largest = 0;  // int64: a label of 2^31 - 1 has no int32 class count
    for (int32_t l : all) largest = std::max<int64_t>(largest, l);
    if (largest >= std::numeric_limits<int32_t>::max()) {
      return Status(Code::kDataLoss,
                    StrCat(kKind, " '", path, "': '", labels_name, "' holds label ", largest,
                           ", past the largest class id (", std::numeric_limits<int32_t>::max() - 1,
                           "); give '/", split, "' a num_classes attribute or fix the labels"));
    }
    classes = static_cast<int32_t>(largest + 1);
    d.num_classes_inferred = true;
  }
  d.num_classes = classes;
  for (int64_t i = 0; i < count; ++i) {
    if (d.labels[i] < 0 || d.labels[i] >= d.num_classes) {
      return Status(Code::kDataLoss,
                    StrCat(kKind, " '", path, "': label ", d.labels[i], " of example ", begin + i,
                           " in '/", split, "' is outside [0, ", d.num_classes, ")"));
    }
  }
  return d;
}

Status WriteHdf5Arrays(const std::string& path, const std::vector<NamedTensor>& arrays,
                       const std::vector<std::string>& class_names) {
  hdf5_util::QuietHdf5();
  constexpr const char* kResults = "results file";
  Handle file(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose);
  if (!file.ok()) return Hdf5Error(Code::kUnavailable, kResults, path, "cannot create it");
  for (const auto& [name, t] : arrays) {
    hid_t file_type = -1, mem_type = -1;
    switch (t.dtype()) {
      case DType::kFloat32:
        file_type = H5T_IEEE_F32LE, mem_type = H5T_NATIVE_FLOAT;
        break;
      case DType::kFloat64:
        file_type = H5T_IEEE_F64LE, mem_type = H5T_NATIVE_DOUBLE;
        break;
      case DType::kInt32:
        file_type = H5T_STD_I32LE, mem_type = H5T_NATIVE_INT32;
        break;
      case DType::kInt64:
        file_type = H5T_STD_I64LE, mem_type = H5T_NATIVE_INT64;
        break;
      default:
        return InvalidArgument(kResults, " '", path, "': '", name, "' is ", DTypeName(t.dtype()),
                               ": float32, float64, int32 or int64 only");
    }
    std::vector<hsize_t> dims;
    for (int64_t d : t.shape().dims()) dims.push_back(static_cast<hsize_t>(d));
    Handle space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose);
    Handle set(H5Dcreate2(file.get(), ("/" + name).c_str(), file_type, space.get(), H5P_DEFAULT,
                          H5P_DEFAULT, H5P_DEFAULT),
               H5Dclose);
    if (!set.ok() || (t.num_elements() > 0 &&
                      H5Dwrite(set.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.raw()) < 0)) {
      return Hdf5Error(Code::kUnavailable, kResults, path, "cannot write '/", name, "'");
    }
  }
  if (!class_names.empty() && !WriteClassNames(file.get(), class_names)) {
    return Hdf5Error(Code::kUnavailable, kResults, path, "cannot write attribute 'classes'");
  }
  if (file.Close() < 0) return Hdf5Error(Code::kUnavailable, kResults, path, "cannot close it");
  return Status::OK();
}

}  // namespace mpiflow
