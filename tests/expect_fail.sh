#!/usr/bin/env bash
# Runs a command that must end with the expected code (a failure: not a signal or a crash; or 0)
# and print a message matching the regex on stdout or stderr.
# Usage: expect_fail.sh [--also REGEX]... [--within SECONDS] [--ends-after REGEX SECONDS]
#                       <expected-exit-code|nonzero|died> <regex> <command> [args...]
# nonzero: a failure exit code (1-123); died: any end but success or the --within kill (a
# crash: 128 + the signal, or 1 where a sanitizer's handler reported it).
# --also adds a regex that must match too (say, the same error from every MPI rank); --within
# fails the test when the command takes longer (it is killed after twice that); --ends-after
# fails it when the command ends more than SECONDS after the first output line matching REGEX
# arrived (say, how long the other ranks live after one is killed), and prints that time.
set -u
also=() within=0 after_regex="" after_seconds=0
while [ $# -gt 0 ]; do
  case "$1" in
    --also) also+=("$2"); shift 2 ;;
    --within) within=$2; shift 2 ;;
    --ends-after) after_regex=$2 after_seconds=$3; shift 3 ;;
    *) break ;;
  esac
done
expected=$1 regex=$2
shift 2
limit=()
if [ "$within" != 0 ]; then limit=(timeout -s KILL $((within * 2))); fi
start=$(date +%s%N)
# Each output line stamped with the microsecond it arrived (bash's EPOCHREALTIME, no fork).
stamped=$(
  "${limit[@]+"${limit[@]}"}" "$@" 2>&1 | while IFS= read -r line || [ -n "$line" ]; do
    printf '%s %s\n' "${EPOCHREALTIME/./}" "$line"
  done
  exit "${PIPESTATUS[0]}"
)
code=$?
end_us=${EPOCHREALTIME/./}
# shellcheck disable=SC2001  # a regex per line: parameter expansion cannot anchor it
out=$(sed "s/^[0-9]* //" <<<"$stamped")
elapsed_ms=$((($(date +%s%N) - start) / 1000000))
elapsed="$((elapsed_ms / 1000)).$(printf %03d $((elapsed_ms % 1000)))"
echo "$out"
if [ "$expected" = nonzero ]; then
  if [ "$code" -eq 0 ] || [ "$code" -ge 124 ]; then
    echo "expect_fail: exit code $code, expected a failure exit code (1-123)" >&2
    exit 1
  fi
elif [ "$expected" = died ]; then
  if [ "$code" -eq 0 ] || { [ "$within" != 0 ] && [ "$code" -eq 137 ]; }; then
    echo "expect_fail: exit code $code, expected the command to die" >&2
    exit 1
  fi
elif [ "$code" -ne "$expected" ]; then
  echo "expect_fail: exit code $code, expected $expected" >&2
  exit 1
fi
for r in "$regex" "${also[@]+"${also[@]}"}"; do
  if ! grep -Eq -- "$r" <<<"$out"; then
    echo "expect_fail: output does not match: $r" >&2
    exit 1
  fi
done
if [ -n "$after_regex" ]; then
  seen=$(grep -E -m1 -- "^[0-9]+ .*($after_regex)" <<<"$stamped" | cut -d' ' -f1)
  if [ -z "$seen" ]; then
    echo "expect_fail: no output line matches: $after_regex" >&2
    exit 1
  fi
  after_ms=$(((end_us - seen) / 1000))
  echo "expect_fail: ended $((after_ms / 1000)).$(printf %03d $((after_ms % 1000)))s after: $after_regex"
  if [ "$after_ms" -gt $((after_seconds * 1000)) ]; then
    echo "expect_fail: that is more than ${after_seconds}s" >&2
    exit 1
  fi
fi
if [ "$within" != 0 ] && [ "$elapsed_ms" -gt $((within * 1000)) ]; then
  echo "expect_fail: took ${elapsed}s, more than ${within}s" >&2
  exit 1
fi
echo "expect_fail: ok (exit $code, messages matched, ${elapsed}s)"
