// Image datasets in HDF5: /<split>/images as uint8 (count, rows, cols), chunked by whole images
// and deflate-compressed, /<split>/labels as int32 (count), and attributes naming the source
// and the class count. Reads take a range of examples through a hyperslab selection, so a rank
// reads its part without the rest of the file. Not the training-data policy (trainer.cc).
#include <hdf5.h>

#include <algorithm>
#include <new>

#include "hdf5_util.h"
#include "mpiflow/data.h"

namespace mpiflow {

using hdf5_util::Handle;
using hdf5_util::Hdf5Error;

namespace {
constexpr const char* kKind = "dataset file";
}  // namespace

Status WriteHdf5Split(const std::string& path, const std::string& split, const ImageDataset& d,
                      int64_t chunk_images, int compression) {
  hdf5_util::QuietHdf5();
  if (chunk_images < 1 || compression < 0 || compression > 9) {
    return InvalidArgument("HDF5 dataset: chunk must be >= 1 image and compression 0-9, got ",
                           chunk_images, " and ", compression);
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
  // images: (count, rows, cols) uint8
  const hsize_t dims[3] = {static_cast<hsize_t>(d.count), static_cast<hsize_t>(d.rows),
                           static_cast<hsize_t>(d.cols)};
  const hsize_t chunk[3] = {
      static_cast<hsize_t>(std::max<int64_t>(1, std::min<int64_t>(chunk_images, d.count))), dims[1],
      dims[2]};
  Handle space(H5Screate_simple(3, dims, nullptr), H5Sclose);
  Handle dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  if (d.count > 0) {
    H5Pset_chunk(dcpl.get(), 3, chunk);
    if (compression > 0) H5Pset_deflate(dcpl.get(), static_cast<unsigned>(compression));
  }
  Handle images(H5Dcreate2(group.get(), "images", H5T_STD_U8LE, space.get(), H5P_DEFAULT,
                           dcpl.get(), H5P_DEFAULT),
                H5Dclose);
  if (!images.ok() || (d.count > 0 && H5Dwrite(images.get(), H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL,
                                               H5P_DEFAULT, d.images.data()) < 0)) {
    return Hdf5Error(Code::kUnavailable, kKind, path, "cannot write '/", split, "/images'");
  }
  // labels: (count) int32
  Handle lspace(H5Screate_simple(1, dims, nullptr), H5Sclose);
  Handle labels(H5Dcreate2(group.get(), "labels", H5T_STD_I32LE, lspace.get(), H5P_DEFAULT,
                           H5P_DEFAULT, H5P_DEFAULT),
                H5Dclose);
  if (!labels.ok() || (d.count > 0 && H5Dwrite(labels.get(), H5T_NATIVE_INT32, H5S_ALL, H5S_ALL,
                                               H5P_DEFAULT, d.labels.data()) < 0)) {
    return Hdf5Error(Code::kUnavailable, kKind, path, "cannot write '/", split, "/labels'");
  }
  const int32_t classes = d.num_classes;
  Handle aspace(H5Screate(H5S_SCALAR), H5Sclose);
  Handle attr(
      H5Acreate2(group.get(), "num_classes", H5T_STD_I32LE, aspace.get(), H5P_DEFAULT, H5P_DEFAULT),
      H5Aclose);
  if (!attr.ok() || H5Awrite(attr.get(), H5T_NATIVE_INT32, &classes) < 0) {
    return Hdf5Error(Code::kUnavailable, kKind, path, "cannot write '/", split,
                     "' attribute num_classes");
  }
  if (H5Fflush(file.get(), H5F_SCOPE_GLOBAL) < 0) {
    return Hdf5Error(Code::kUnavailable, kKind, path, "cannot flush it");
  }
  return Status::OK();
}

StatusOr<int64_t> Hdf5SplitSize(const std::string& path, const std::string& split) {
  StatusOr<ImageDataset> none = ReadHdf5Split(path, split, 0, 0);  // reads the metadata only
  if (!none.ok()) return none.status();
  return none->source_count;
}

StatusOr<ImageDataset> ReadHdf5Split(const std::string& path, const std::string& split,
                                     int64_t begin, int64_t count) {
  hdf5_util::QuietHdf5();
  if (H5Fis_hdf5(path.c_str()) <= 0) {
    H5Eclear2(H5E_DEFAULT);
    return Status(Code::kNotFound, StrCat(kKind, " '", path,
                                          "' is missing or not an HDF5 file (convert IDX files "
                                          "with mpiflow-data convert)"));
  }
  Handle file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  if (!file.ok()) return Hdf5Error(Code::kDataLoss, kKind, path, "cannot open it");
  const std::string images_name = "/" + split + "/images", labels_name = "/" + split + "/labels";
  if (H5Lexists(file.get(), ("/" + split).c_str(), H5P_DEFAULT) <= 0) {
    H5Eclear2(H5E_DEFAULT);
    return Status(Code::kNotFound,
                  StrCat(kKind, " '", path, "' has no split '/", split, "' (try train or test)"));
  }
  Handle images(H5Dopen2(file.get(), images_name.c_str(), H5P_DEFAULT), H5Dclose);
  Handle labels(H5Dopen2(file.get(), labels_name.c_str(), H5P_DEFAULT), H5Dclose);
  if (!images.ok() || !labels.ok()) {
    return Hdf5Error(Code::kDataLoss, kKind, path, "needs '", images_name, "' and '", labels_name,
                     "'");
  }
  Handle ispace(H5Dget_space(images.get()), H5Sclose);
  Handle lspace(H5Dget_space(labels.get()), H5Sclose);
  hsize_t dims[3] = {0, 0, 0}, ldims[1] = {0};
  if (H5Sget_simple_extent_ndims(ispace.get()) != 3 ||
      H5Sget_simple_extent_ndims(lspace.get()) != 1) {
    return Status(Code::kDataLoss,
                  StrCat(kKind, " '", path, "': '", images_name,
                         "' must be (count, rows, cols) and '", labels_name, "' (count)"));
  }
  H5Sget_simple_extent_dims(ispace.get(), dims, nullptr);
  H5Sget_simple_extent_dims(lspace.get(), ldims, nullptr);
  const int64_t total = static_cast<int64_t>(dims[0]);
  if (ldims[0] != dims[0]) {
    return Status(Code::kDataLoss, StrCat(kKind, " '", path, "': ", dims[0], " images but ",
                                          ldims[0], " labels in '/", split, "'"));
  }
  if (count < 0) count = total - begin;
  if (begin < 0 || count < 0 || begin + count > total) {
    return InvalidArgument(kKind, " '", path, "': examples [", begin, ", ", begin + count,
                           ") are outside '/", split, "' (", total, " examples)");
  }
  // What the file declares is not trusted before it is allocated (a damaged header declared
  // petabytes: found by fuzz/hdf5_dataset_fuzzer.cc).
  constexpr hsize_t kMaxSide = 1 << 16;
  if (dims[1] == 0 || dims[2] == 0 || dims[1] > kMaxSide || dims[2] > kMaxSide ||
      dims[0] > (hsize_t{1} << 40)) {
    return Status(Code::kDataLoss,
                  StrCat(kKind, " '", path, "': '", images_name, "' is ", dims[0], " x ", dims[1],
                         " x ", dims[2], ": not images (sides 1 to 65536)"));
  }
  ImageDataset d;
  d.count = count;
  d.source_count = total;
  d.rows = static_cast<int64_t>(dims[1]);
  d.cols = static_cast<int64_t>(dims[2]);
  try {
    d.images.resize(static_cast<size_t>(count * d.rows * d.cols));
    d.labels.resize(static_cast<size_t>(count));
  } catch (const std::bad_alloc&) {
    return Status(Code::kUnavailable, StrCat(kKind, " '", path, "': ", count, " images of ", d.rows,
                                             "x", d.cols, " from '/", split,
                                             "' do not fit in memory here (read a share of them "
                                             "per rank: --data-sharding local)"));
  }
  if (H5Aexists(images.get(), "num_classes") > 0 ||
      H5Aexists_by_name(file.get(), ("/" + split).c_str(), "num_classes", H5P_DEFAULT) > 0) {
    Handle attr(
        H5Aopen_by_name(file.get(), ("/" + split).c_str(), "num_classes", H5P_DEFAULT, H5P_DEFAULT),
        H5Aclose);
    int32_t classes = 10;
    if (attr.ok() && H5Aread(attr.get(), H5T_NATIVE_INT32, &classes) >= 0) d.num_classes = classes;
  }
  H5Eclear2(H5E_DEFAULT);
  if (count == 0) return d;
  // The hyperslab [begin, begin + count) of both datasets: only those chunks are read.
  const hsize_t start[3] = {static_cast<hsize_t>(begin), 0, 0};
  const hsize_t extent[3] = {static_cast<hsize_t>(count), dims[1], dims[2]};
  Handle imem(H5Screate_simple(3, extent, nullptr), H5Sclose);
  Handle lmem(H5Screate_simple(1, extent, nullptr), H5Sclose);
  if (H5Sselect_hyperslab(ispace.get(), H5S_SELECT_SET, start, nullptr, extent, nullptr) < 0 ||
      H5Sselect_hyperslab(lspace.get(), H5S_SELECT_SET, start, nullptr, extent, nullptr) < 0 ||
      H5Dread(images.get(), H5T_NATIVE_UINT8, imem.get(), ispace.get(), H5P_DEFAULT,
              d.images.data()) < 0 ||
      H5Dread(labels.get(), H5T_NATIVE_INT32, lmem.get(), lspace.get(), H5P_DEFAULT,
              d.labels.data()) < 0) {
    return Hdf5Error(Code::kDataLoss, kKind, path, "cannot read examples [", begin, ", ",
                     begin + count, ") of '/", split, "' (truncated or damaged?)");
  }
  for (int64_t i = 0; i < count; ++i) {
    if (d.labels[i] < 0 || d.labels[i] >= d.num_classes) {
      return Status(Code::kDataLoss,
                    StrCat(kKind, " '", path, "': label ", d.labels[i], " of example ", begin + i,
                           " in '/", split, "' is outside [0, ", d.num_classes, ")"));
    }
  }
  return d;
}

}  // namespace mpiflow
