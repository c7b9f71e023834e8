#!/usr/bin/env node
// Launcher: runs the CLI from its bundle (bin/bundled.js rebuilds it when a source changed).
import { runBundled } from './bundled.js';
await runBundled('control/cli/appnet.ts', 'appnet');
