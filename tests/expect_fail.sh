#!/usr/bin/env bash
# Runs a command that must fail cleanly: exit with the expected code (not a signal or crash)
# and print a message matching the regex on stdout or stderr.
# Usage: expect_fail.sh <expected-exit-code> <regex> <command> [args...]
set -u
expected=$1 regex=$2
shift 2
out=$("$@" 2>&1)
code=$?
echo "$out"
if [ "$code" -ne "$expected" ]; then
  echo "expect_fail: exit code $code, expected $expected" >&2
  exit 1
fi
if ! grep -Eq -- "$regex" <<<"$out"; then
  echo "expect_fail: output does not match: $regex" >&2
  exit 1
fi
echo "expect_fail: ok (exit $code, message matched)"
