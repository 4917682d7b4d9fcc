// The WordNet lexicographer-file task (LoadWordnetLexname, data.h), exactly as
// ../shared/datasets/wordnet-lexname.md specifies it: examples from the synset lines of
// data.noun, data.verb, data.adj and data.adv, glosses tokenised into a vocabulary of the
// training split. Not a general text pipeline and not the model (models/embed_bag.ini).
#include <algorithm>
#include <cstring>
#include <fstream>
#include <iterator>
#include <unordered_map>

#include "mpiflow/data.h"

namespace mpiflow {
namespace {

// The 45 lexicographer files, by number.
constexpr const char* kLexnames[] = {"adj.all",          "adj.pert",           "adv.all",
                                     "noun.Tops",        "noun.act",           "noun.animal",
                                     "noun.artifact",    "noun.attribute",     "noun.body",
                                     "noun.cognition",   "noun.communication", "noun.event",
                                     "noun.feeling",     "noun.food",          "noun.group",
                                     "noun.location",    "noun.motive",        "noun.object",
                                     "noun.person",      "noun.phenomenon",    "noun.plant",
                                     "noun.possession",  "noun.process",       "noun.quantity",
                                     "noun.relation",    "noun.shape",         "noun.state",
                                     "noun.substance",   "noun.time",          "verb.body",
                                     "verb.change",      "verb.cognition",     "verb.communication",
                                     "verb.competition", "verb.consumption",   "verb.contact",
                                     "verb.creation",    "verb.emotion",       "verb.motion",
                                     "verb.perception",  "verb.possession",    "verb.social",
                                     "verb.stative",     "verb.weather",       "adj.ppl"};
constexpr int kClasses = 45;

// One synset line as read: its split, label and tokens (indices into the token table).
struct Example {
  bool test = false;
  int32_t label = 0;
  std::vector<int32_t> tokens;
};

bool AllDigits(const std::string& s, size_t n) {
  return s.size() == n &&
         std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Reads one data.<pos> file's synset lines into `out`, tokens interned in `index`/`tokens`.
Status ReadFile(const std::string& path, std::unordered_map<std::string, int32_t>* index,
                std::vector<std::string>* tokens, std::vector<Example>* out) {
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    return NotFound("cannot open '", path,
                    "': the WordNet task reads Debian's wordnet-base (apt-get install "
                    "wordnet-base; --data-dir /usr/share/wordnet)");
  }
  const std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  size_t at = 0;
  for (int line_no = 1; at < bytes.size(); ++line_no) {
    size_t end = bytes.find('\n', at);
    if (end == std::string::npos) end = bytes.size();  // a last line without '\n'
    const std::string line = bytes.substr(at, end - at);
    const size_t offset = at;
    at = end + 1;
    if (line.compare(0, 2, "  ") == 0) continue;  // the licence header
    const auto bad = [&](const std::string& what) {
      return DataLoss("'", path, "':", line_no, ": ", what,
                      " (is it WordNet 3.0's data file, from Debian's wordnet-base?)");
    };
    const size_t bar = line.find(" | ");
    if (bar == std::string::npos) return bad("a synset line without ' | ' before its gloss");
    const std::string header = line.substr(0, bar);
    const size_t s1 = header.find(' '),
                 s2 = s1 == std::string::npos ? s1 : header.find(' ', s1 + 1);
    const std::string field1 = header.substr(0, s1);
    const std::string field2 = s1 == std::string::npos ? "" : header.substr(s1 + 1, s2 - s1 - 1);
    if (!AllDigits(field1, 8) || std::stoull(field1) != offset) {
      return bad(StrCat("the synset offset '", field1,
                        "' is not 8 digits equal to the line's byte "
                        "offset ",
                        offset));
    }
    if (!AllDigits(field2, 2) || std::stoi(field2) >= kClasses) {
      return bad(StrCat("the lexicographer file number '", field2, "' is not 00 to 44"));
    }
    Example e;
    e.test = offset % 10 == 0;
    e.label = std::stoi(field2);
    // Tokens: maximal runs of [a-z0-9] after ASCII lowercasing.
    std::string token;
    for (size_t i = bar + 3; i <= line.size(); ++i) {
      char c = i < line.size() ? line[i] : ' ';
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
      if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
        token += c;
        continue;
      }
      if (token.empty()) continue;
      auto [it, added] = index->emplace(token, static_cast<int32_t>(tokens->size()));
      if (added) tokens->push_back(token);
      e.tokens.push_back(it->second);
      token.clear();
    }
    out->push_back(std::move(e));
  }
  return Status::OK();
}

}  // namespace

StatusOr<WordnetLexname> LoadWordnetLexname(const std::string& dir) {
  std::unordered_map<std::string, int32_t> index;
  std::vector<std::string> tokens;
  std::vector<Example> examples;
  for (const char* pos : {"noun", "verb", "adj", "adv"}) {
    MPIFLOW_RETURN_IF_ERROR(ReadFile(StrCat(dir, "/data.", pos), &index, &tokens, &examples));
  }
  // The vocabulary: training tokens seen twice or more, by count (descending), then bytes.
  std::vector<int64_t> count(tokens.size(), 0);
  for (const Example& e : examples) {
    if (e.test) continue;
    for (int32_t t : e.tokens) ++count[t];
  }
  std::vector<int32_t> kept;
  for (size_t t = 0; t < tokens.size(); ++t) {
    if (count[t] >= 2) kept.push_back(static_cast<int32_t>(t));
  }
  std::sort(kept.begin(), kept.end(), [&](int32_t a, int32_t b) {
    return count[a] != count[b] ? count[a] > count[b] : tokens[a] < tokens[b];
  });
  WordnetLexname w;
  std::vector<int32_t> id(tokens.size(), 0);  // 0: unknown
  for (size_t i = 0; i < kept.size(); ++i) {
    id[kept[i]] = static_cast<int32_t>(i + 1);
    w.vocabulary.push_back(tokens[kept[i]]);
  }
  // Features: (count, longest) ids as float32, -1 after an example's last token.
  size_t longest = 1;
  for (const Example& e : examples) longest = std::max(longest, e.tokens.size());
  for (Dataset* d : {&w.train, &w.test}) {
    d->is_float = true;
    d->scale = 1.0f;
    d->offset = 0.0f;
    d->example = Shape{static_cast<int64_t>(longest)};
    d->num_classes = kClasses;
    d->class_names.assign(std::begin(kLexnames), std::end(kLexnames));
  }
  for (const Example& e : examples) {
    Dataset& d = e.test ? w.test : w.train;
    for (size_t i = 0; i < longest; ++i) {
      d.floats.push_back(i < e.tokens.size() ? static_cast<float>(id[e.tokens[i]]) : -1.0f);
    }
    d.labels.push_back(e.label);
    ++d.count;
  }
  w.train.source_count = w.train.count;
  w.test.source_count = w.test.count;
  return w;
}

}  // namespace mpiflow
