// Model files: the INI reader and the typing of each section's keys into a LayerSpec
// (ParseModelSpec, LoadModelSpec, the built-ins). Not the graph (layers.cc builds it).
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <utility>

#include "builtin_models.h"
#include "mpiflow/enum_names.h"
#include "mpiflow/models.h"

namespace mpiflow {
namespace {

constexpr EnumName<LayerType> kLayerTypes[] = {{LayerType::kDense, "dense"},
                                               {LayerType::kConv2D, "conv2d"},
                                               {LayerType::kMaxPool, "max_pool"},
                                               {LayerType::kAvgPool, "avg_pool"},
                                               {LayerType::kFlatten, "flatten"},
                                               {LayerType::kReshape, "reshape"},
                                               {LayerType::kDropout, "dropout"},
                                               {LayerType::kBatchNorm, "batch_norm"},
                                               {LayerType::kLayerNorm, "layer_norm"},
                                               {LayerType::kAdd, "add"},
                                               {LayerType::kEmbeddingBag, "embedding_bag"}};
constexpr EnumName<Activation> kActivations[] = {{Activation::kNone, "none"},
                                                 {Activation::kRelu, "relu"},
                                                 {Activation::kTanh, "tanh"},
                                                 {Activation::kSigmoid, "sigmoid"}};
constexpr EnumName<bool> kBools[] = {{false, "false"}, {true, "true"}};
constexpr EnumName<Combiner> kCombiners[] = {{Combiner::kMean, "mean"}, {Combiner::kSum, "sum"}};
constexpr EnumName<LossType> kLosses[] = {
    {LossType::kSoftmaxCrossEntropy, "softmax_cross_entropy"}};

std::string Trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return "";
  const size_t e = s.find_last_not_of(" \t\r");
  return s.substr(b, e - b + 1);
}

// One `key = value` line of a section.
struct Entry {
  std::string key, value;
  int line = 0;
  bool used = false;
};

// A section as read: its entries in order.
struct Section {
  std::string name;
  int line = 0;
  std::vector<Entry> entries;
};

// The keys of one section, typed on request; every error names the place.
class Keys {
 public:
  Keys(const std::string& source, Section* sec) : source_(source), sec_(sec) {}

  Entry* Find(const std::string& key) {
    for (Entry& e : sec_->entries) {
      if (e.key == key) {
        e.used = true;
        return &e;
      }
    }
    return nullptr;
  }
  Status Error(const Entry* e, const std::string& what) const {
    if (e == nullptr) {
      return InvalidArgument(source_, ":", sec_->line, ": [", sec_->name, "] ", what);
    }
    return InvalidArgument(source_, ":", e->line, ": [", sec_->name, "] ", e->key, " = ", e->value,
                           ": ", what);
  }
  // An integer >= `min`; `required` without a default.
  Status Int(const std::string& key, int64_t min, bool required, int64_t* out) {
    Entry* e = Find(key);
    if (e == nullptr) {
      return required ? Error(nullptr, StrCat("needs '", key, " = ...' (an integer)"))
                      : Status::OK();
    }
    char* end = nullptr;
    errno = 0;
    const long long v = std::strtoll(e->value.c_str(), &end, 10);
    if (e->value.empty() || *end != '\0' || errno == ERANGE) {
      return Error(e, "not an integer");
    }
    if (v < min) return Error(e, StrCat("must be >= ", min));
    if (v > (int64_t{1} << 31)) return Error(e, "too large");
    *out = v;
    return Status::OK();
  }
  // A number in [lo, hi) (hi_closed: [lo, hi]).
  Status Real(const std::string& key, double lo, double hi, bool hi_closed, double* out) {
    Entry* e = Find(key);
    if (e == nullptr) return Status::OK();
    char* end = nullptr;
    const double v = std::strtod(e->value.c_str(), &end);
    if (e->value.empty() || *end != '\0' || !std::isfinite(v)) return Error(e, "not a number");
    if (v < lo || (hi_closed ? v > hi : v >= hi)) {
      return Error(e, StrCat("must be in [", lo, ", ", hi, hi_closed ? "]" : ")"));
    }
    *out = v;
    return Status::OK();
  }
  template <typename E, size_t N>
  Status Enum(const std::string& key, const EnumName<E> (&names)[N], E* out) {
    Entry* e = Find(key);
    if (e == nullptr) return Status::OK();
    for (const EnumName<E>& n : names) {
      if (e->value == n.name) {
        *out = n.value;
        return Status::OK();
      }
    }
    return Error(e, StrCat("must be ", EnumChoices(names)));
  }
  Status Padding(std::string* out) {
    Entry* e = Find("padding");
    if (e == nullptr) return Status::OK();
    if (e->value != "same" && e->value != "valid") return Error(e, "must be same or valid");
    *out = e->value == "same" ? "SAME" : "VALID";
    return Status::OK();
  }
  // "28, 28, 1": integers >= 1, one of them may be -1.
  Status Dims(const std::string& key, std::vector<int64_t>* out) {
    Entry* e = Find(key);
    if (e == nullptr) return Error(nullptr, StrCat("needs '", key, " = ...' (e.g. 7, 7, 64)"));
    std::stringstream ss(e->value);
    std::string item;
    int unknown = 0;
    while (std::getline(ss, item, ',')) {
      item = Trim(item);
      char* end = nullptr;
      const long long v = std::strtoll(item.c_str(), &end, 10);
      if (item.empty() || *end != '\0' || (v < 1 && v != -1) || v > (int64_t{1} << 31)) {
        return Error(e, "needs integers >= 1 separated by commas (one may be -1)");
      }
      unknown += v == -1;
      out->push_back(v);
    }
    if (out->empty() || unknown > 1)
      return Error(e, "needs at least one dimension, one -1 at most");
    return Status::OK();
  }
  Status Text(const std::string& key, std::string* out) {
    Entry* e = Find(key);
    if (e == nullptr) return Error(nullptr, StrCat("needs '", key, " = ...'"));
    *out = e->value;
    return Status::OK();
  }
  // After typing: a key no layer of this type reads is an error.
  Status NoneLeft(const std::string& type) const {
    for (const Entry& e : sec_->entries) {
      if (!e.used) return Error(&e, StrCat("'", e.key, "' is not a key of a ", type, " layer"));
    }
    return Status::OK();
  }

 private:
  const std::string& source_;
  Section* sec_;
};

// Which keys each layer type reads, with their defaults.
Status TypeLayer(Keys& k, LayerSpec* l) {
  switch (l->type) {
    case LayerType::kDense:
      if (Entry* e = k.Find("units"); e != nullptr && e->value == "classes") {
        l->units = 0;  // the data's class count, when built
      } else {
        MPIFLOW_RETURN_IF_ERROR(k.Int("units", 1, true, &l->units));
      }
      return k.Enum("activation", kActivations, &l->activation);
    case LayerType::kConv2D:
      l->stride = 1;
      l->padding = "SAME";
      MPIFLOW_RETURN_IF_ERROR(k.Int("filters", 1, true, &l->filters));
      MPIFLOW_RETURN_IF_ERROR(k.Int("kernel", 1, true, &l->kernel));
      MPIFLOW_RETURN_IF_ERROR(k.Int("stride", 1, false, &l->stride));
      MPIFLOW_RETURN_IF_ERROR(k.Padding(&l->padding));
      return k.Enum("activation", kActivations, &l->activation);
    case LayerType::kMaxPool:
    case LayerType::kAvgPool:
      l->padding = "VALID";
      MPIFLOW_RETURN_IF_ERROR(k.Int("size", 1, true, &l->kernel));
      l->stride = l->kernel;
      MPIFLOW_RETURN_IF_ERROR(k.Int("stride", 1, false, &l->stride));
      return k.Padding(&l->padding);
    case LayerType::kFlatten:
      return Status::OK();
    case LayerType::kReshape:
      return k.Dims("shape", &l->shape);
    case LayerType::kDropout:
      if (k.Find("rate") == nullptr) return k.Error(nullptr, "needs 'rate = ...' (in [0, 1))");
      return k.Real("rate", 0, 1, false, &l->rate);
    case LayerType::kBatchNorm:
      MPIFLOW_RETURN_IF_ERROR(k.Real("momentum", 0, 1, false, &l->momentum));
      MPIFLOW_RETURN_IF_ERROR(k.Enum("sync", kBools, &l->sync));
      return k.Real("epsilon", 1e-12, 1, true, &l->epsilon);
    case LayerType::kLayerNorm:
      return k.Real("epsilon", 1e-12, 1, true, &l->epsilon);
    case LayerType::kAdd:
      return k.Text("from", &l->from);
    case LayerType::kEmbeddingBag:
      MPIFLOW_RETURN_IF_ERROR(k.Int("vocab", 1, true, &l->vocab));
      if (l->vocab > (int64_t{1} << 24)) {  // ids are float32 features: exact to 2^24
        return k.Error(k.Find("vocab"), "must be at most 16777216 (ids travel as float32)");
      }
      MPIFLOW_RETURN_IF_ERROR(k.Int("dim", 1, true, &l->dim));
      if (l->vocab > (int64_t{1} << 40) / l->dim) {  // 4 TiB of float32: no machine's table
        return k.Error(k.Find("dim"),
                       StrCat("a ", l->vocab, " x ", l->dim, " table is more than 2^40 values"));
      }
      return k.Enum("combiner", kCombiners, &l->combiner);
  }
  return Status::OK();
}

}  // namespace

const char* LayerTypeName(LayerType t) { return EnumToName(kLayerTypes, t); }
const char* ActivationName(Activation a) { return EnumToName(kActivations, a); }

StatusOr<ModelSpec> ParseModelSpec(const std::string& text, const std::string& source) {
  // Read: sections of `key = value` lines; '#' or ';' starts a comment (at a line's start, or
  // after a blank inside one).
  std::vector<Section> sections;
  std::istringstream in(text);
  std::string raw;
  for (int line = 1; std::getline(in, raw); ++line) {
    for (size_t i = 0; i < raw.size(); ++i) {
      if ((raw[i] == '#' || raw[i] == ';') && (i == 0 || raw[i - 1] == ' ' || raw[i - 1] == '\t')) {
        raw.resize(i);
        break;
      }
    }
    const std::string s = Trim(raw);
    if (s.empty()) continue;
    if (s.front() == '[') {
      const std::string name = s.back() == ']' ? Trim(s.substr(1, s.size() - 2)) : "";
      bool ok = !name.empty();
      for (char c : name) ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '_');
      if (!ok) {
        return InvalidArgument(source, ":", line, ": '", s,
                               "' is not a section name (letters, digits and _ in [ ])");
      }
      for (const Section& prev : sections) {
        if (prev.name == name) {
          return InvalidArgument(source, ":", line, ": section [", name, "] again (first on line ",
                                 prev.line, "): names must differ");
        }
      }
      sections.push_back({name, line, {}});
      continue;
    }
    const size_t eq = s.find('=');
    if (eq == std::string::npos) {
      return InvalidArgument(source, ":", line, ": '", s, "' is neither [section] nor key = value");
    }
    if (sections.empty()) {
      return InvalidArgument(source, ":", line, ": '", s,
                             "' comes before the first [section]: every key belongs to a layer");
    }
    Entry e{Trim(s.substr(0, eq)), Trim(s.substr(eq + 1)), line, false};
    for (const Entry& prev : sections.back().entries) {
      if (prev.key == e.key) {
        return InvalidArgument(source, ":", line, ": [", sections.back().name, "] ", e.key,
                               " again (first on line ", prev.line, ")");
      }
    }
    if (e.key.empty() || e.value.empty()) {
      return InvalidArgument(source, ":", line, ": [", sections.back().name, "] '", s,
                             "' needs a key and a value");
    }
    sections.back().entries.push_back(std::move(e));
  }

  // Type each section.
  ModelSpec spec;
  spec.source = source;
  const size_t slash = source.find_last_of('/');
  spec.name = source.substr(slash == std::string::npos ? 0 : slash + 1);
  spec.name = spec.name.substr(0, spec.name.find('.'));
  std::set<std::string> earlier;
  for (Section& sec : sections) {
    Keys k(source, &sec);
    if (sec.name == "loss") {
      MPIFLOW_RETURN_IF_ERROR(k.Enum("type", kLosses, &spec.loss));
      MPIFLOW_RETURN_IF_ERROR(k.NoneLeft("loss"));
      continue;
    }
    LayerSpec l;
    l.name = sec.name;
    l.line = sec.line;
    Entry* type = k.Find("type");
    if (type == nullptr) {
      return k.Error(nullptr, StrCat("needs 'type = ...' (", EnumChoices(kLayerTypes), ")"));
    }
    MPIFLOW_RETURN_IF_ERROR(k.Enum("type", kLayerTypes, &l.type));
    MPIFLOW_RETURN_IF_ERROR(TypeLayer(k, &l));
    MPIFLOW_RETURN_IF_ERROR(k.NoneLeft(LayerTypeName(l.type)));
    if (l.type == LayerType::kAdd && earlier.count(l.from) == 0) {
      return k.Error(k.Find("from"), l.from == l.name
                                         ? "a layer cannot add its own output (a cycle)"
                                         : "not an earlier section: 'from' must name a layer "
                                           "above this one (a later one would make a cycle)");
    }
    earlier.insert(l.name);
    spec.layers.push_back(std::move(l));
  }
  if (spec.layers.empty()) {
    return InvalidArgument(source,
                           ": no layers (a model file has one [section] per layer; see "
                           "models/README.md)");
  }
  return spec;
}

std::vector<std::string> BuiltinModelNames() {
  std::vector<std::string> names;
  for (const BuiltinModelFile& f : BuiltinModelFiles()) names.push_back(f.name);
  return names;
}

std::string BuiltinModelText(const std::string& name) {
  for (const BuiltinModelFile& f : BuiltinModelFiles()) {
    if (name == f.name) return f.text;
  }
  return "";
}

StatusOr<ModelSpec> LoadModelSpec(const std::string& name_or_path) {
  const std::string builtin = BuiltinModelText(name_or_path);
  if (!builtin.empty()) {
    return ParseModelSpec(builtin, StrCat("models/", name_or_path, ".ini (built in)"));
  }
  std::ifstream f(name_or_path);
  if (!f) {
    std::string names;
    for (const std::string& n : BuiltinModelNames()) names += (names.empty() ? "" : ", ") + n;
    return NotFound("--model '", name_or_path, "' is neither a built-in model (", names,
                    ") nor a readable model file");
  }
  std::stringstream text;
  text << f.rdbuf();
  return ParseModelSpec(text.str(), name_or_path);
}

}  // namespace mpiflow
