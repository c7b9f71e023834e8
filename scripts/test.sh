#!/usr/bin/env bash
# Runs every test (unit, namespace integration, kernel interop) and ends with one plain line:
# "N passed, N failed". Exits non-zero on any failure. Needs root (network namespaces).
set -uo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp)
trap 'rm -f "$out"' EXIT
npx --no-install ava --tap "$@" 2>&1 | tee "$out"
status=${PIPESTATUS[0]}
passed=$(grep -cE '^ok [0-9]+' "$out" | tr -d ' ')
skipped=$(grep -cE '^ok [0-9]+ .*# (SKIP|TODO)' "$out" | tr -d ' ')
failed=$(grep -cE '^not ok [0-9]+' "$out" | tr -d ' ')
passed=$((passed - skipped))
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi  # crashed before reporting
if [ "$passed" -eq 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi  # ran nothing: not a pass
echo
if [ "$skipped" -gt 0 ]; then echo "$passed passed, $failed failed, $skipped skipped"; else echo "$passed passed, $failed failed"; fi
[ "$failed" -eq 0 ] && [ "$status" -eq 0 ]
