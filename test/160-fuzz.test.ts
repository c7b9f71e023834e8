// Every fuzz target, built with ASan and UBSan, runs for a short budget (FUZZ_CI_SECONDS, default 20) from its
// checked-in seeds and every regression input; a crash, a sanitizer report or a leak fails the test and names the
// input. The long runs live in `npm run fuzz` (fuzz/README.md).
import test from 'ava';
import { build, runTarget, targets } from '../fuzz/runner.ts';

const SECONDS = Number(process.env.FUZZ_CI_SECONDS ?? 20);

test.before(() => build());

for (const target of targets()) {
  test.serial(`fuzz target ${target}: ${SECONDS} s from the seeds and regressions without a crash`, async (t) => {
    const r = await runTarget(target, { seconds: SECONDS });
    t.deepEqual(r.crashes, [], `${target} crashed`);
    t.true(r.execs > 0, 'the target ran inputs');
    t.true(r.coverage > 0, 'libFuzzer saw coverage');
  });
}
