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
