#!/usr/bin/env node
// Launcher: registers the TypeScript loader, then runs the daemon from source.
import { register } from 'tsx/esm/api';
register();
await import('../control/daemon/appnetd.ts');
