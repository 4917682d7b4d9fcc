// The text names of an option's enum values, in one table per enum: parsing a name, naming a
// value, and the error that lists every name ("--model must be mlp or cnn, got 'x'"), so an
// option's values are checked in one place, where its enum is declared.
// Not a reflection system: each enum keeps its own table beside its Parse/Name functions.
#pragma once

#include <cstddef>
#include <string>

#include "mpiflow/status.h"

namespace mpiflow {

template <typename E>
struct EnumName {
  E value;
  const char* name;
};

// The names in table order: "a, b or c".
template <typename E, size_t N>
std::string EnumChoices(const EnumName<E> (&table)[N]) {
  std::string names;
  for (size_t i = 0; i < N; ++i) {
    names += StrCat(i == 0 ? "" : i + 1 == N ? " or " : ", ", table[i].name);
  }
  return names;
}

// `what` starts the error ("--model"); the names are listed in table order.
template <typename E, size_t N>
StatusOr<E> ParseEnum(const EnumName<E> (&table)[N], const char* what, const std::string& text) {
  for (const EnumName<E>& e : table) {
    if (text == e.name) return e.value;
  }
  return InvalidArgument(what, " must be ", EnumChoices(table), ", got '", text, "'");
}

template <typename E, size_t N>
const char* EnumToName(const EnumName<E> (&table)[N], E value) {
  for (const EnumName<E>& e : table) {
    if (e.value == value) return e.name;
  }
  return "?";
}

}  // namespace mpiflow
