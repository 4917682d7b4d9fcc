// Datasets from the files people keep their arrays in: CSV (one example per line, the label in
// one column), NumPy .npy (a features array and a labels array) and .npz (both in one zip
// archive, stored or deflated, as numpy.savez and savez_compressed write them). Not HDF5
// (hdf5_dataset.cc), not IDX (dataset.cc).
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <new>
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

// A .npy array from `f`; `path` names it in errors (a file, or "archive.npz:member.npy").
StatusOr<NpyArray> ReadNpy(std::istream& f, const std::string& path) {
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

StatusOr<NpyArray> ReadNpy(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return NotFound("cannot open '", path, "'");
  return ReadNpy(f, path);
}

// Little-endian fields of a zip record at `p`.
uint64_t Le(const std::string& b, size_t p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(b[p + i]);
  return v;
}

// One member of a zip archive (what an .npz is), read whole: the central directory at the end
// names each member with its sizes and where its local header is; the data follows that header,
// stored (method 0) or deflated (8), checked against its CRC-32. ZIP64 sizes and offsets are
// read (numpy writes them for large arrays). `names` gets every member's name.
StatusOr<std::string> ZipMember(const std::string& path, const std::string& member,
                                std::vector<std::string>* names) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return NotFound("cannot open '", path, "'");
  const std::string b((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const auto bad = [&](const std::string& what) {
    return DataLoss("'", path, "' is not a readable .npz (zip) archive: ", what);
  };
  // The end-of-central-directory record: 22 bytes and a comment of up to 65535.
  size_t eocd = std::string::npos;
  for (size_t i = b.size() >= 22 ? b.size() - 22 : 0; b.size() >= 22; --i) {
    if (Le(b, i, 4) == 0x06054b50) {
      eocd = i;
      break;
    }
    if (i == 0 || b.size() - i > 22 + 65535) break;
  }
  if (eocd == std::string::npos) return bad("no end-of-central-directory record");
  uint64_t entries = Le(b, eocd + 10, 2), dir = Le(b, eocd + 16, 4);
  if ((entries == 0xffff || dir == 0xffffffff) && eocd >= 20 && Le(b, eocd - 20, 4) == 0x07064b50) {
    const uint64_t e64 = Le(b, eocd - 12, 8);  // the ZIP64 end record
    if (b.size() < 56 || e64 > b.size() - 56 || Le(b, e64, 4) != 0x06064b50) {
      return bad("a broken ZIP64 record");
    }
    entries = Le(b, e64 + 32, 8);
    dir = Le(b, e64 + 48, 8);
  }
  size_t p = dir;
  for (uint64_t e = 0; e < entries; ++e) {
    if (p > b.size() || b.size() - p < 46 || Le(b, p, 4) != 0x02014b50) {
      return bad(StrCat("central directory entry ", e, " is outside the file or damaged"));
    }
    const int method = static_cast<int>(Le(b, p + 10, 2));
    const uint32_t crc = static_cast<uint32_t>(Le(b, p + 16, 4));
    uint64_t packed = Le(b, p + 20, 4), size = Le(b, p + 24, 4), local = Le(b, p + 42, 4);
    const size_t name_len = Le(b, p + 28, 2), extra_len = Le(b, p + 30, 2);
    const size_t comment_len = Le(b, p + 32, 2);
    if (b.size() - p - 46 < name_len + extra_len + comment_len) {
      return bad(StrCat("central directory entry ", e, " is truncated"));
    }
    const std::string name = b.substr(p + 46, name_len);
    // The ZIP64 extra field (id 1) holds, in order, each of the three that is all ones above.
    for (size_t x = p + 46 + name_len; x + 4 <= p + 46 + name_len + extra_len;) {
      const uint64_t id = Le(b, x, 2), len = Le(b, x + 2, 2);
      size_t at = x + 4;
      if (x + 4 + len > p + 46 + name_len + extra_len) break;
      for (uint64_t* v : {&size, &packed, &local}) {
        if (id == 1 && *v == 0xffffffff && at + 8 <= x + 4 + len) *v = Le(b, at, 8), at += 8;
      }
      x += 4 + len;
    }
    p += 46 + name_len + extra_len + comment_len;
    names->push_back(name);
    if (name != member) continue;
    if (local > b.size() || b.size() - local < 30 || Le(b, local, 4) != 0x04034b50) {
      return bad(StrCat("member '", name, "': its local header is outside the file or damaged"));
    }
    const uint64_t start = local + 30 + Le(b, local + 26, 2) + Le(b, local + 28, 2);
    if (start > b.size() || b.size() - start < packed) {
      return bad(StrCat("member '", name, "' is truncated"));
    }
    if (method != 0 && method != 8) {
      return bad(StrCat("member '", name, "' uses compression method ", method,
                        " (only stored and deflated are read)"));
    }
    // Deflate expands at most 1032-fold: a larger size is a damaged entry, not allocated.
    if (size > (uint64_t{1} << 40) || (method == 8 && size > packed * 1032 + 64) ||
        (method == 0 && size != packed)) {
      return bad(StrCat("member '", name, "' claims ", size, " bytes from ", packed));
    }
    std::string out;
    try {
      out.resize(static_cast<size_t>(size));
    } catch (const std::bad_alloc&) {
      return Status(Code::kUnavailable, StrCat("'", path, "': member '", name, "' is ", size,
                                               " bytes: more than this machine can hold"));
    }
    if (method == 0) {
      std::copy_n(b.begin() + static_cast<std::ptrdiff_t>(start), size, out.begin());
    } else {  // 8: deflated
      z_stream z{};
      if (inflateInit2(&z, -MAX_WBITS) != Z_OK) return bad("zlib cannot start");
      z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(b.data() + start));
      z.next_out = reinterpret_cast<Bytef*>(out.data());
      int rc = Z_OK;
      for (uint64_t in_left = packed, out_left = size; rc == Z_OK;) {
        // zlib counts in uInt: feed and drain at most 1 GiB at a time
        const uInt in_step = static_cast<uInt>(std::min<uint64_t>(in_left, 1u << 30));
        const uInt out_step = static_cast<uInt>(std::min<uint64_t>(out_left, 1u << 30));
        z.avail_in = in_step;
        z.avail_out = out_step;
        rc = inflate(&z, Z_NO_FLUSH);
        in_left -= in_step - z.avail_in;
        out_left -= out_step - z.avail_out;
        if (rc == Z_OK && in_step == z.avail_in && out_step == z.avail_out) rc = Z_DATA_ERROR;
      }
      const bool whole = rc == Z_STREAM_END && z.total_out == size;
      inflateEnd(&z);
      if (!whole) return bad(StrCat("member '", name, "': its deflated data is damaged"));
    }
    uLong sum = crc32(0L, Z_NULL, 0);
    for (uint64_t at = 0; at < size; at += 1u << 30) {
      sum = crc32(sum, reinterpret_cast<const Bytef*>(out.data() + at),
                  static_cast<uInt>(std::min<uint64_t>(size - at, 1u << 30)));
    }
    if (sum != crc) return bad(StrCat("member '", name, "' fails its CRC-32 check"));
    return out;
  }
  return NotFound("'", path, "' has no array '", member.substr(0, member.size() - 4), "'");
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

// A dataset from a features array and a labels array, named in errors.
StatusOr<Dataset> FromArrays(const StatusOr<NpyArray>& x, const std::string& features_path,
                             const StatusOr<NpyArray>& y, const std::string& labels_path) {
  if (!x.ok()) return x.status();
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

}  // namespace

StatusOr<Dataset> ReadNpyDataset(const std::string& features_path, const std::string& labels_path) {
  return FromArrays(ReadNpy(features_path), features_path, ReadNpy(labels_path), labels_path);
}

StatusOr<Dataset> ReadNpzDataset(const std::string& path, const std::string& features,
                                 const std::string& labels) {
  std::vector<StatusOr<NpyArray>> arrays;  // features, labels
  for (int i = 0; i < 2; ++i) {
    const std::string key = i == 0 ? features : labels;
    std::vector<std::string> names;
    StatusOr<std::string> bytes = ZipMember(path, key + ".npy", &names);
    if (!bytes.ok()) {
      std::string have;
      for (const std::string& n : names) {
        if (n.size() > 4 && n.compare(n.size() - 4, 4, ".npy") == 0) {
          have += (have.empty() ? "" : ", ") + n.substr(0, n.size() - 4);
        }
      }
      if (bytes.status().code() != Code::kNotFound || names.empty()) return bytes.status();
      return NotFound(bytes.status().message(), " (it has: ", have, ")");
    }
    std::istringstream in(*bytes);
    arrays.push_back(ReadNpy(in, StrCat(path, ":", key)));
  }
  return FromArrays(arrays[0], StrCat(path, ":", features), arrays[1], StrCat(path, ":", labels));
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
