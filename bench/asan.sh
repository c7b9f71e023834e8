#!/usr/bin/env bash
# The whole addon built with AddressSanitizer and UndefinedBehaviorSanitizer (g++'s), and the namespace tests run
# against it: every appnetd the tests start loads the sanitized addon (APPNET_ADDON) with libasan preloaded.
# Reports from any process land in $OUT/asan.*; the end prints the tests that failed and how many reports name
# appnet's own code, and exits non-zero on either. Not CI: it is slow.
#   bash bench/asan.sh [test files...]     (default: the data-plane namespace tests)
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
OUT=${OUT:-$(mktemp -d /tmp/appnet-asan-XXXXXX)}
BUILD=$OUT/native
mkdir -p "$BUILD"
cp -r native/binding.gyp native/src "$BUILD/"
echo "asan: building the addon with -fsanitize=address,undefined in $BUILD"
NODE_PATH=$PWD/node_modules CXXFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
LDFLAGS="-fsanitize=address,undefined" \
  npx --no-install node-gyp rebuild --directory "$BUILD" --loglevel=error >"$OUT/build.log" 2>&1 || { cat "$OUT/build.log"; exit 1; }
files=("$@")
if [ ${#files[@]} -eq 0 ]; then
  files=(test/30-vxlan-two-hosts.test.ts test/31-vxlan-three-hosts.test.ts test/32-kernel-interop.test.ts test/34-bad-input.test.ts
         test/35-punt-inject.test.ts test/37-engine-in-memory.test.ts test/38-tap-gro.test.ts test/39-port-filter.test.ts
         test/60-link-encrypted.test.ts test/61-link-attacks.test.ts test/62-link-resilience.test.ts test/63-dataplane-trust.test.ts
         test/70-capture.test.ts test/83-services-e2e.test.ts test/86-nat-e2e.test.ts test/93-connections-e2e.test.ts)
fi
export APPNET_ADDON=$BUILD/build/Release/appnet.node
export LD_PRELOAD=$(g++ -print-file-name=libasan.so)
# Node itself is not instrumented: no leak checking (its allocations would all be "leaks"); keep going after a report.
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=0:log_path=$OUT/asan:allocator_may_return_null=1"
export UBSAN_OPTIONS="print_stacktrace=1:log_path=$OUT/ubsan"
echo "asan: running ${#files[@]} test files against it"
bash scripts/test.sh --concurrency=1 "${files[@]}" > "$OUT/tests.txt" 2>&1
tests=$?
unset LD_PRELOAD
grep -E '^not ok' "$OUT/tests.txt"
tail -1 "$OUT/tests.txt"
reports=$(ls "$OUT"/asan.* "$OUT"/ubsan.* 2>/dev/null | xargs -r grep -l 'native/src\|appnet.node' 2>/dev/null | wc -l)
echo "asan: $reports reports naming appnet's code (all reports: $(ls "$OUT"/asan.* "$OUT"/ubsan.* 2>/dev/null | wc -l)) in $OUT"
[ "$reports" -eq 0 ] && [ "$tests" -eq 0 ]
