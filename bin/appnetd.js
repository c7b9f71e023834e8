#!/usr/bin/env -S node --max-semi-space-size=1 --v8-pool-size=1
// Launcher: runs the daemon from its bundle (bin/bundled.js rebuilds it when a source changed).
//
// The node flags keep a sidecar that runs on every host small (issue 4's budget: RSS <= 100 MB). The
// daemon runs no JavaScript per packet, so a 1 MB young generation (default 16 MB) only means more,
// shorter scavenges of control-plane garbage, and one V8 worker thread (default 4) is plenty for its GC.
// Together they save ~15 MB. Start the daemon as `appnetd` or `bin/appnetd.js` so that they apply.
import { runBundled } from './bundled.js';
await runBundled('control/daemon/appnetd.ts', 'appnetd');
