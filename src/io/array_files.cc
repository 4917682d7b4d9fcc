// Datasets from the files people keep their arrays in: CSV (one example per line, the label in
// one column) and NumPy .npy (a features array and a labels array). Not HDF5
// (hdf5_dataset.cc), not IDX (dataset.cc); .npz archives are not read (save the arrays with
// numpy.save instead).
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>

#include "mpiflow/data.h"

namespace mpiflow {
namespace {

// The number of classes: the largest label + 1.
void SetClasses(Dataset* d) {
  int32_t classes = 1;
  for (int32_t l : d->labels) classes = std::max(classes, l + 1);
  d->num_classes = classes;
}

// A parsed .npy header: dtype ("<f4", "|u1", ...), C order, shape.
struct NpyArray {
  std::string dtype;
  std::vector<int64_t> shape;
  std::vector<char> data;  // raw little-endian values
};

StatusOr<NpyArray> ReadNpy(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return NotFound("cannot open '", path, "'");
  char magic[8];
  if (!f.read(magic, 8) || std::memcmp(magic, "\x93NUMPY", 6) != 0) {
    return InvalidArgument("'", path, "' is not a NumPy .npy file (no \\x93NUMPY magic)");
  }
  uint32_t header_len = 0;
  if (magic[6] == 1) {
    unsigned char b[2];
    if (!f.read(reinterpret_cast<char*>(b), 2)) return DataLoss("'", path, "' is truncated");
    header_len = b[0] | (b[1] << 8);
  } else if (magic[6] == 2 || magic[6] == 3) {
    unsigned char b[4];
    if (!f.read(reinterpret_cast<char*>(b), 4)) return DataLoss("'", path, "' is truncated");
    header_len = b[0] | (b[1] << 8) | (b[2] << 16) | (uint32_t{b[3]} << 24);
  } else {
    return InvalidArgument("'", path, "': .npy format version ", int{magic[6]},
                           " is not 1, 2 or 3");
  }
  if (header_len > (1 << 20)) return DataLoss("'", path, "': a header of ", header_len, " bytes");
  std::string header(header_len, '\0');
  if (!f.read(&header[0], header_len)) return DataLoss("'", path, "' is truncated in its header");
  // {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
  auto value_of = [&](const std::string& key) -> std::string {
    const size_t k = header.find("'" + key + "'");
    if (k == std::string::npos) return "";
    const size_t colon = header.find(':', k);
    return colon == std::string::npos ? "" : header.substr(colon + 1);
  };
  NpyArray a;
  const std::string descr = value_of("descr");
  const size_t q1 = descr.find('\''), q2 = descr.find('\'', q1 + 1);
  if (q1 == std::string::npos || q2 == std::string::npos) {
    return DataLoss("'", path, "': no dtype ('descr') in the header");
  }
  a.dtype = descr.substr(q1 + 1, q2 - q1 - 1);
  if (value_of("fortran_order").find("True") < value_of("fortran_order").find(',')) {
    return InvalidArgument("'", path,
                           "' is in Fortran order: save it in C order (numpy.ascontiguousarray)");
  }
  const std::string shape = value_of("shape");
  const size_t open = shape.find('('), close = shape.find(')');
  if (open == std::string::npos || close == std::string::npos) {
    return DataLoss("'", path, "': no shape in the header");
  }
  std::stringstream dims(shape.substr(open + 1, close - open - 1));
  std::string item;
  int64_t n = 1;
  while (std::getline(dims, item, ',')) {
    if (item.find_first_not_of(" ") == std::string::npos) continue;
    char* end = nullptr;
    const long long d = std::strtoll(item.c_str(), &end, 10);
    if (d < 0 || d > (int64_t{1} << 40)) return DataLoss("'", path, "': dimension ", item);
    a.shape.push_back(d);
    if (d > 0 && n > (int64_t{1} << 40) / d) return DataLoss("'", path, "': too large");
    n *= d;
  }
  // The types At() reads (found by fuzz/array_files_fuzzer.cc: '<i3' read 8 bytes of 3).
  static const char* const kTypes[] = {"f4", "f8", "u1", "u2", "u4", "u8",
                                       "i1", "i2", "i4", "i8", "b1"};
  const std::string kind = a.dtype.size() == 3 ? a.dtype.substr(1) : "";
  const bool known = std::find(std::begin(kTypes), std::end(kTypes), kind) != std::end(kTypes);
  const int64_t size = known ? kind[1] - '0' : 0;
  if (!known || (a.dtype[0] != '<' && a.dtype[0] != '|' && !(a.dtype[0] == '>' && size == 1))) {
    return InvalidArgument("'", path, "' holds ", a.dtype,
                           ": only little-endian numbers (<f4, <f8, |u1, <i4, <i8, ...) are read");
  }
  // What the header declares is checked against the file before it is allocated.
  const std::streamoff at = f.tellg();
  f.seekg(0, std::ios::end);
  const std::streamoff left = f.tellg() - at;
  f.seekg(at);
  if (n > 0 && (n > left / size || !f)) {
    return DataLoss("'", path, "' is truncated: its header promises ", n, " values of ", size,
                    " bytes");
  }
  a.data.resize(static_cast<size_t>(n * size));
  if (n > 0 && !f.read(a.data.data(), static_cast<std::streamsize>(a.data.size()))) {
    return DataLoss("'", path, "' is truncated: its header promises ", n, " values of ", size,
                    " bytes");
  }
  return a;
}

// Value i of `a` as double (its dtype's kind and size: f4 f8 u1 u2 u4 u8 i1 i2 i4 i8 b1).
double At(const NpyArray& a, int64_t i) {
  const char kind = a.dtype[1];
  const int size = std::atoi(a.dtype.c_str() + 2);
  const char* p = a.data.data() + i * size;
  auto get = [&](auto v) {
    std::memcpy(&v, p, sizeof(v));
    return static_cast<double>(v);
  };
  if (kind == 'f') return size == 4 ? get(float{}) : get(double{});
  if (kind == 'u' || kind == 'b') {
    return size == 1   ? get(uint8_t{})
           : size == 2 ? get(uint16_t{})
           : size == 4 ? get(uint32_t{})
                       : get(uint64_t{});
  }
  return size == 1   ? get(int8_t{})
         : size == 2 ? get(int16_t{})
         : size == 4 ? get(int32_t{})
                     : get(int64_t{});
}

}  // namespace

StatusOr<Dataset> ReadNpyDataset(const std::string& features_path, const std::string& labels_path) {
  StatusOr<NpyArray> x = ReadNpy(features_path);
  if (!x.ok()) return x.status();
  StatusOr<NpyArray> y = ReadNpy(labels_path);
  if (!y.ok()) return y.status();
  const char xk = x->dtype[1], yk = y->dtype[1];
  if (xk != 'f' && xk != 'u' && xk != 'i' && xk != 'b') {
    return InvalidArgument("'", features_path, "' holds ", x->dtype, ": not numbers");
  }
  if (yk != 'u' && yk != 'i') {
    return InvalidArgument("'", labels_path, "' holds ", y->dtype,
                           ": labels must be integers (class ids)");
  }
  if (x->shape.size() < 2 || y->shape.size() != 1 || x->shape[0] != y->shape[0]) {
    std::string xs, ys;
    for (int64_t d : x->shape) xs += StrCat(xs.empty() ? "" : ", ", d);
    for (int64_t d : y->shape) ys += StrCat(ys.empty() ? "" : ", ", d);
    return InvalidArgument("'", features_path, "' is (", xs, ") and '", labels_path, "' (", ys,
                           "): features must be (n, ...) and labels (n) for the same n");
  }
  Dataset d;
  d.count = x->shape[0];
  d.example = Shape(std::vector<int64_t>(x->shape.begin() + 1, x->shape.end()));
  const int64_t values = d.count * d.example_size();
  if (x->dtype == "|u1") {  // images: bytes, seen as value / 255
    d.bytes.assign(x->data.begin(), x->data.end());
  } else {
    d.is_float = true;
    d.scale = 1.0f;
    d.floats.resize(static_cast<size_t>(values));
    for (int64_t i = 0; i < values; ++i) d.floats[i] = static_cast<float>(At(*x, i));
  }
  for (int64_t i = 0; i < d.count; ++i) {
    const double l = At(*y, i);
    if (l < 0 || l > (1 << 24)) {
      return InvalidArgument("'", labels_path, "': label ", l, " of example ", i,
                             " is not a class id (0 to 16777216)");
    }
    d.labels.push_back(static_cast<int32_t>(l));
  }
  SetClasses(&d);
  return d;
}

StatusOr<Dataset> ReadCsvDataset(const std::string& path, int label_column) {
  std::ifstream f(path);
  if (!f) return NotFound("cannot open '", path, "'");
  Dataset d;
  d.is_float = true;
  d.scale = 1.0f;
  std::string line;
  int64_t columns = -1;
  for (int line_no = 1; std::getline(f, line); ++line_no) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    std::vector<std::string> cells;
    std::stringstream ss(line);
    std::string cell;
    while (std::getline(ss, cell, ',')) cells.push_back(cell);
    if (!line.empty() && line.back() == ',') cells.push_back("");
    std::vector<double> row;
    bool numeric = true;
    for (const std::string& c : cells) {
      char* end = nullptr;
      errno = 0;
      const double v = std::strtod(c.c_str(), &end);
      const bool ok = !c.empty() && end != c.c_str() &&
                      std::string(end).find_first_not_of(" \t") == std::string::npos &&
                      std::isfinite(v);
      numeric = numeric && ok;
      row.push_back(v);
    }
    if (!numeric && columns < 0 && d.count == 0) continue;  // a header line
    if (columns < 0) {
      columns = static_cast<int64_t>(cells.size());
      if (label_column < 0 || label_column >= columns || columns < 2) {
        return InvalidArgument("'", path, "':", line_no, ": ", columns,
                               " columns, so the label column ", label_column,
                               " leaves no features (--label-column counts from 0)");
      }
    }
    if (static_cast<int64_t>(cells.size()) != columns) {
      return InvalidArgument("'", path, "':", line_no, ": ", cells.size(),
                             " columns, the first "
                             "line of data has ",
                             columns);
    }
    if (!numeric) {
      return InvalidArgument("'", path, "':", line_no, ": a value that is not a finite number");
    }
    const double label = row[label_column];
    if (label < 0 || label != std::floor(label) || label > (1 << 24)) {
      return InvalidArgument("'", path, "':", line_no, ": label ", label,
                             " is not a class id (an integer from 0)");
    }
    d.labels.push_back(static_cast<int32_t>(label));
    for (int64_t c = 0; c < columns; ++c) {
      if (c != label_column) d.floats.push_back(static_cast<float>(row[c]));
    }
    ++d.count;
  }
  if (d.count == 0) return InvalidArgument("'", path, "' holds no rows of numbers");
  d.example = Shape{columns - 1};
  SetClasses(&d);
  return d;
}

}  // namespace mpiflow
