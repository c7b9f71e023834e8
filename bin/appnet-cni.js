#!/usr/bin/env node
// Launcher of the `appnet` CNI plugin (setup installs /opt/cni/bin/appnet, which runs this file).
import { runBundled } from './bundled.js';
await runBundled('control/cni/main.ts', 'appnet-cni');
