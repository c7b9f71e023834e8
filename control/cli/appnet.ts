// Entry point of `appnet` (bin/appnet.js imports this; `node --import tsx control/cli/appnet.ts` also works).
import { main } from './program.ts';

process.exitCode = await main(process.argv);
