// What the command-line tools (mpiflow-train, -ckpt, -data, -scaling-model) share: one option
// syntax, one way to report a bad option, one --version line. Not any tool's options.
#pragma once

#include <boost/program_options.hpp>
#include <string>
#include <vector>

namespace mpiflow::cli {

// GNU-style long and short options, without Boost's prefix guessing (--epoch is not --epochs).
constexpr int kStyle = boost::program_options::command_line_style::unix_style ^
                       boost::program_options::command_line_style::allow_guessing;

// Parses argv with `options` (bare words go to `positional`) into *vm and runs notify(). On an
// unknown option or a bad value prints "TOOL: <what is wrong, naming the option> (see --help)"
// on stderr and returns false: the caller exits with its usage code.
bool ParseCommandLine(const char* tool, int argc, char** argv,
                      const boost::program_options::options_description& options,
                      const boost::program_options::positional_options_description& positional,
                      boost::program_options::variables_map* vm);

// Boost.Program_options 1.74 loops for ever composing the message about a bad value that holds
// one of its own placeholders ("%value%", "%canonical_option%": found by fuzzing the job file).
// The first "%word%" in `text` ("" when none): callers refuse such input before Boost sees it.
std::string PlaceholderIn(const std::string& text);
// The first argument of argv[1..] that holds one, as "TOOL: argument ... (see --help)" on stderr;
// false when there is one.
bool CheckArguments(const char* tool, int argc, char** argv);

// Prints "TOOL VERSION" (mpiflow's version) on stdout: every tool's --version.
void PrintVersion(const char* tool);

// "Options": --help (-h) and --version, which every tool has.
boost::program_options::options_description StandardOptions();

// A tool of subcommands ("TOOL COMMAND OPERAND... [options]"): ParseCommandLine with `shown`
// (what --help lists) plus the bare words, the first into *command, the rest into *operands.
bool ParseSubcommandLine(const char* tool, int argc, char** argv,
                         const boost::program_options::options_description& shown,
                         std::string* command, std::vector<std::string>* operands,
                         boost::program_options::variables_map* vm);

}  // namespace mpiflow::cli
