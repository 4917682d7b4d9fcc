// The parameter servers' message format's helpers (ps_wire.h): the sparse section's and the
// wants' sizes and readers, the per-shard widths and row counts. Not the protocol
// (parameter_server.h) and not either side's link.
#include "ps_wire.h"

namespace mpiflow {

namespace ps_wire {

std::string List(const std::vector<int>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += StrCat(i ? ", " : "", v[i]);
  return s;
}

int64_t SectionFloats(const std::vector<int64_t>& width, const std::vector<int64_t>& n) {
  int64_t f = 0;
  for (size_t j = 0; j < width.size(); ++j) {
    if (width[j] > 0) f += 2 + n[j] * (2 + width[j]);
  }
  return f;
}

Status ReadSection(const float* p, int64_t left, const std::vector<int64_t>& width,
                   const std::vector<int64_t>& rows, std::vector<SectionPart>* parts,
                   int64_t* used) {
  const int64_t given = left;
  parts->assign(width.size(), SectionPart());
  for (size_t j = 0; j < width.size(); ++j) {
    if (width[j] == 0) continue;
    if (left < 2) return Internal("the sparse section ends before variable ", j, "'s row count");
    SectionPart& part = (*parts)[j];
    part.n = GetCount(p);
    p += 2;
    left -= 2;
    if (part.n < 0 || part.n > left / (2 + width[j])) {
      return Internal("variable ", j, "'s ", part.n, " rows do not fit the ", left, " floats left");
    }
    part.indices = p;
    for (int64_t i = 0; i < part.n; ++i) {
      const int64_t r = GetCount(p + 2 * i);
      if (r < 0 || r >= rows[j]) {
        return Internal("variable ", j, "'s row ", r, " is out of range [0, ", rows[j], ")");
      }
    }
    part.rows = p + 2 * part.n;
    p += part.n * (2 + width[j]);
    left -= part.n * (2 + width[j]);
  }
  if (used) {
    *used = given - left;
  } else if (left != 0) {
    return Internal(left, " floats after the sparse section");
  }
  return Status::OK();
}

int64_t WantsFloats(const std::vector<int64_t>& width, const std::vector<int64_t>& n) {
  int64_t f = 0;
  for (size_t j = 0; j < width.size(); ++j) {
    if (width[j] > 0) f += 2 + 2 * n[j];
  }
  return f;
}

Status ReadWants(const float* p, int64_t left, const std::vector<int64_t>& width,
                 const std::vector<int64_t>& rows, std::vector<std::vector<int64_t>>* wants) {
  wants->assign(width.size(), {});
  for (size_t j = 0; j < width.size(); ++j) {
    if (width[j] == 0) continue;
    if (left < 2) return Internal("the wants end before variable ", j, "'s row count");
    const int64_t n = GetCount(p);
    p += 2;
    left -= 2;
    if (n < 0 || n > left / 2) {
      return Internal("variable ", j, "'s ", n, " wanted rows do not fit the ", left,
                      " floats left");
    }
    std::vector<int64_t>& w = (*wants)[j];
    for (int64_t i = 0; i < n; ++i) {
      const int64_t r = GetCount(p + 2 * i);
      if (r < 0 || r >= rows[j] || (!w.empty() && r <= w.back())) {
        return Internal("variable ", j, "'s wanted row ", r, " is out of range [0, ", rows[j],
                        ") or out of order");
      }
      w.push_back(r);
    }
    p += 2 * n;
    left -= 2 * n;
  }
  if (left != 0) return Internal(left, " floats after the wants");
  return Status::OK();
}

std::vector<int64_t> Widths(const PsLayout& l, int k) {
  std::vector<int64_t> w;
  for (int v : l.shards[k]) w.push_back(l.row_width[v]);
  return w;
}

std::vector<int64_t> RowCounts(const PsLayout& l, int k, const std::vector<Shape>& shapes) {
  std::vector<int64_t> r;
  for (size_t j = 0; j < l.shards[k].size(); ++j) {
    r.push_back(shapes[j].rank() > 0 ? shapes[j].dim(0) : 1);
  }
  return r;
}

}  // namespace ps_wire

}  // namespace mpiflow
