#!/usr/bin/env bash
# Runs a command that must end with the expected code (a failure: not a signal or a crash; or 0)
# and print a message matching the regex on stdout or stderr.
# Usage: expect_fail.sh [--also REGEX]... [--within SECONDS] <expected-exit-code|nonzero> <regex>
#                       <command> [args...]
# --also adds a regex that must match too (say, the same error from every MPI rank); --within
# fails the test when the command takes longer (it is killed after twice that).
set -u
also=() within=0
while [ $# -gt 0 ]; do
  case "$1" in
    --also) also+=("$2"); shift 2 ;;
    --within) within=$2; shift 2 ;;
    *) break ;;
  esac
done
expected=$1 regex=$2
shift 2
start=$(date +%s%N)
if [ "$within" != 0 ]; then
  out=$(timeout -s KILL $((within * 2)) "$@" 2>&1)
else
  out=$("$@" 2>&1)
fi
code=$?
elapsed_ms=$((($(date +%s%N) - start) / 1000000))
elapsed="$((elapsed_ms / 1000)).$(printf %03d $((elapsed_ms % 1000)))"
echo "$out"
if [ "$expected" = nonzero ]; then
  if [ "$code" -eq 0 ] || [ "$code" -ge 124 ]; then
    echo "expect_fail: exit code $code, expected a failure exit code (1-123)" >&2
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
if [ "$within" != 0 ] && [ "$elapsed_ms" -gt $((within * 1000)) ]; then
  echo "expect_fail: took ${elapsed}s, more than ${within}s" >&2
  exit 1
fi
echo "expect_fail: ok (exit $code, messages matched, ${elapsed}s)"
