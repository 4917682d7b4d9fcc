// The command-line tools' shared parsing and --version (cli.h).
#include "cli.h"

#include <cstdio>

namespace po = boost::program_options;

bool mpiflow::cli::ParseCommandLine(const char* tool, int argc, char** argv,
                                    const po::options_description& options,
                                    const po::positional_options_description& positional,
                                    po::variables_map* vm) {
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
