// The checkpoint checksum header (checkpoint_header.h).
#include "checkpoint_header.h"

#include <zlib.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

namespace mpiflow {
namespace checkpoint_header {
namespace {

// The checksum header in the user block (checkpoint.h): the CRC-32 of every byte after it, the
// file's size, as one text line.
constexpr char kHeaderMagic[] = "mpiflow-checkpoint ";
constexpr unsigned char kHdf5Signature[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};

// CRC-32 of `f` from `offset` to its end, and its size.
bool CrcFrom(std::FILE* f, int64_t offset, uint32_t* crc, int64_t* size) {
  if (std::fseek(f, 0, SEEK_END) != 0) return false;
  *size = std::ftell(f);
  if (*size < offset || std::fseek(f, offset, SEEK_SET) != 0) return false;
  std::vector<unsigned char> buf(1 << 20);
  uLong c = crc32(0L, Z_NULL, 0);
  for (size_t n; (n = std::fread(buf.data(), 1, buf.size(), f)) > 0;) {
    c = crc32_z(c, buf.data(), n);
  }
  *crc = static_cast<uint32_t>(c);
  return !std::ferror(f);
}

}  // namespace

Status WriteHeader(const std::string& tmp, const std::string& path) {
  std::FILE* f = std::fopen(tmp.c_str(), "r+b");
  if (!f) {
    return Status(Code::kUnavailable, StrCat("checkpoint '", path, "': cannot reopen '", tmp,
                                             "': ", std::strerror(errno)));
  }
  uint32_t crc = 0;
  int64_t size = 0;
  bool ok = CrcFrom(f, kCheckpointHeaderBytes, &crc, &size);
  char header[kCheckpointHeaderBytes] = {};
  std::snprintf(header, sizeof(header), "%s%lld size=%lld crc32=%08x\n", kHeaderMagic,
                static_cast<long long>(kCheckpointFormatVersion), static_cast<long long>(size),
                crc);
  ok = ok && std::fseek(f, 0, SEEK_SET) == 0 &&
       std::fwrite(header, 1, sizeof(header), f) == sizeof(header);
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) {
    return Status(Code::kUnavailable,
                  StrCat("checkpoint '", path, "': cannot write the header of '", tmp, "'"));
  }
  return Status::OK();
}

Status CheckHeader(const std::string& path, const ReadOptions& options) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) {
    return Status(Code::kNotFound,
                  StrCat("checkpoint '", path, "': cannot read it: ", std::strerror(errno)));
  }
  char header[kCheckpointHeaderBytes + 1] = {};
  const size_t got = std::fread(header, 1, kCheckpointHeaderBytes, f);
  long long version = 0, size = 0;
  unsigned crc = 0;
  uint32_t actual = 0;
  int64_t actual_size = 0;
  Status s;
  if (got >= sizeof(kHdf5Signature) && std::memcmp(header, kHdf5Signature, 8) == 0) {
    if (!options.trust_unchecked) {
      s = Status(Code::kDataLoss,
                 StrCat("checkpoint '", path,
                        "' has no checksum (format 1, written before mpiflow checked its files), "
                        "so it is not read as it is; if you trust it: mpiflow-ckpt upgrade '",
                        path, "' NEW.h5"));
    }
  } else if (got < kCheckpointHeaderBytes ||
             std::strncmp(header, kHeaderMagic, sizeof(kHeaderMagic) - 1) != 0 ||
             std::sscanf(header + sizeof(kHeaderMagic) - 1, "%lld size=%lld crc32=%x", &version,
                         &size, &crc) != 3) {
    s = Status(Code::kDataLoss, StrCat("checkpoint '", path,
                                       "' is not an mpiflow checkpoint (no 'mpiflow-checkpoint' "
                                       "header, and not HDF5)"));
  } else if (!CrcFrom(f, kCheckpointHeaderBytes, &actual, &actual_size)) {
    s = Status(Code::kDataLoss, StrCat("checkpoint '", path, "': cannot read it through"));
  } else if (actual_size != size) {
    s = Status(Code::kDataLoss, StrCat("checkpoint '", path, "' is truncated or extended: ",
                                       actual_size, " bytes, its header says ", size));
  } else if (actual != crc) {
    char expected[16], found[16];
    std::snprintf(expected, sizeof(expected), "%08x", crc);
    std::snprintf(found, sizeof(found), "%08x", actual);
    s = Status(Code::kDataLoss,
               StrCat("checkpoint '", path, "' is damaged: its CRC-32 is ", found,
                      ", its header says ", expected, " (resume from an older checkpoint)"));
  }
  std::fclose(f);
  return s;
}

}  // namespace checkpoint_header
}  // namespace mpiflow
