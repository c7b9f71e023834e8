#!/usr/bin/env bash
# Runs every test (unit, namespace integration, kernel interop) and ends with one plain line:
# "N passed, N failed". Exits non-zero on any failure. Needs root (network namespaces).
# With no arguments the fuzz test (CPU-bound libFuzzer runs) goes in its own slot after the rest, so its
# fuzzers never share the two cores with namespace tests that wait for daemons to start; with arguments,
# AVA runs what was asked.
set -uo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp)
trap 'rm -f "$out"' EXIT
status=0
run() {
  npx --no-install ava --tap "$@" 2>&1 | tee -a "$out"
  local s=${PIPESTATUS[0]}
  [ "$s" -eq 0 ] || status=$s
}
if [ "$#" -eq 0 ]; then
  mapfile -t fuzz < <(ls test/*-fuzz.test.ts)
  mapfile -t rest < <(ls test/*.test.ts | grep -v -- '-fuzz\.test\.ts$')
  run "${rest[@]}"
  run "${fuzz[@]}"
else
  run "$@"
fi
passed=$(grep -cE '^ok [0-9]+' "$out" | tr -d ' ')
skipped=$(grep -cE '^ok [0-9]+ .*# (SKIP|TODO)' "$out" | tr -d ' ')
failed=$(grep -cE '^not ok [0-9]+' "$out" | tr -d ' ')
passed=$((passed - skipped))
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi  # crashed before reporting
if [ "$passed" -eq 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi  # ran nothing: not a pass
echo
if [ "$skipped" -gt 0 ]; then echo "$passed passed, $failed failed, $skipped skipped"; else echo "$passed passed, $failed failed"; fi
[ "$failed" -eq 0 ] && [ "$status" -eq 0 ]
