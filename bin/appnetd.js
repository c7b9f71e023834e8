#!/usr/bin/env -S node --max-semi-space-size=4 --v8-pool-size=1
// Launcher: runs the daemon from its bundle (bin/bundled.js rebuilds it when a source changed).
//
// The node flags keep a sidecar that runs on every host small (issue 4's budget: RSS <= 100 MB, idle and
// after traffic) without starving its control plane. One V8 worker thread (default 4) is plenty for its GC.
// The young generation is capped at 4 MB semi-spaces (default 16), measured on the control-plane and link
// benchmarks (bench/README.md):
//   1 MB: idle RSS 93 MB, but under API load the loop spent 150-200 ms of every 2 s scavenging, and
//         POST /instances' p99 paid for it;
//   4 MB: idle RSS 95 MB, scavenging ~50 ms per 2 s, pauses <= 5 ms;
//   8 or 16 MB: scavenging 35-45 ms per 2 s, but idle RSS 102-103 MB, over the budget.
// Start the daemon as `appnetd` or `bin/appnetd.js` so that they apply.
import { runBundled } from './bundled.js';
await runBundled('control/daemon/appnetd.ts', 'appnetd');
