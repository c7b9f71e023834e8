// Entry point of the `appnet` CNI plugin (bin/appnet-cni.js runs it): stdin and CNI_* in, result out.
import { runCni } from './plugin.ts';

const chunks: Buffer[] = [];
for await (const c of process.stdin) chunks.push(c as Buffer);
const { stdout, exitCode } = await runCni(process.env, Buffer.concat(chunks).toString('utf8'));
if (stdout !== '') process.stdout.write(stdout + '\n');
process.exitCode = exitCode;
