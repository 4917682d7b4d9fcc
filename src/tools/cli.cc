// The command-line tools' shared parsing and --version (cli.h).
#include "cli.h"

#include <cctype>
#include <cstdio>

namespace po = boost::program_options;

std::string mpiflow::cli::PlaceholderIn(const std::string& text) {
  for (size_t at = text.find('%'); at != std::string::npos; at = text.find('%', at + 1)) {
    size_t end = at + 1;
    while (end < text.size() &&
           (std::islower(static_cast<unsigned char>(text[end])) || text[end] == '_')) {
      ++end;
    }
    if (end > at + 1 && end < text.size() && text[end] == '%') return text.substr(at, end - at + 1);
  }
  return "";
}

bool mpiflow::cli::CheckArguments(const char* tool, int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string bad = PlaceholderIn(argv[i]);
    if (!bad.empty()) {
      std::fprintf(stderr, "%s: argument '%s' holds '%s', which no option takes (see --help)\n",
                   tool, argv[i], bad.c_str());
      return false;
    }
  }
  return true;
}

bool mpiflow::cli::ParseCommandLine(const char* tool, int argc, char** argv,
                                    const po::options_description& options,
                                    const po::positional_options_description& positional,
                                    po::variables_map* vm) {
  if (!CheckArguments(tool, argc, argv)) return false;
  try {
    po::store(po::command_line_parser(argc, argv)
                  .options(options)
                  .positional(positional)
                  .style(kStyle)
                  .run(),
              *vm);
    po::notify(*vm);
  } catch (const po::error& e) {
    std::fprintf(stderr, "%s: %s (see --help)\n", tool, e.what());
    return false;
  }
  return true;
}

void mpiflow::cli::PrintVersion(const char* tool) { std::printf("%s %s\n", tool, MPIFLOW_VERSION); }

po::options_description mpiflow::cli::StandardOptions() {
  po::options_description d("Options");
  d.add_options()("help,h", "print this help and exit")("version",
                                                        "print mpiflow's version and exit");
  return d;
}

bool mpiflow::cli::ParseSubcommandLine(const char* tool, int argc, char** argv,
                                       const po::options_description& shown, std::string* command,
                                       std::vector<std::string>* operands, po::variables_map* vm) {
  po::options_description words;  // the bare words, not listed in --help
  words.add_options()("command", po::value(command))("operand", po::value(operands));
  po::options_description all;
  all.add(shown).add(words);
  po::positional_options_description positional;
  positional.add("command", 1).add("operand", -1);
  return ParseCommandLine(tool, argc, argv, all, positional, vm);
}
