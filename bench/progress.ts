// Which benchmark runs and about how long is left: planned steps times their usual duration on the 2-core
// reference machine, scaled by how the finished ones compared with theirs. Printed on stderr.

/** Usual minutes per benchmark at default settings (bench/README.md); unknown ones count 2. */
export const USUAL_MINUTES: Record<string, number> = {
  encap: 1, vxlan: 4, controlplane: 10, link: 9, 'link-crypto': 1, capture: 3, connections: 3, nat: 2, hops: 1, latency: 3, 'etcd-reads': 1, dhcp: 1, soak: 10,
};

export class BenchProgress {
  #started = 0;
  #usedMs = 0;
  #usualDoneMs = 0;
  readonly #usual: Map<string, number>;

  constructor(readonly steps: readonly string[], private readonly say: (line: string) => void, private readonly now = () => Date.now()) {
    const soakMinutes = Number(/--minutes[= ](\d+)/.exec(process.argv.join(' '))?.[1] ?? NaN);
    this.#usual = new Map(steps.map((s) => [s, (s === 'soak' && soakMinutes > 0 ? soakMinutes : USUAL_MINUTES[s] ?? 2) * 60_000]));
  }

  /** ms still to go, from the steps not finished, at the pace of the finished ones. */
  left(from: number): number {
    const pace = this.#usualDoneMs > 0 ? this.#usedMs / this.#usualDoneMs : 1;
    return this.steps.slice(from).reduce((sum, s) => sum + (this.#usual.get(s) ?? 0), 0) * pace;
  }

  start(step: string): void {
    this.#started = this.now();
    const i = this.steps.indexOf(step);
    this.say(`[${i + 1}/${this.steps.length}] ${step} (about ${minutes(this.left(i))} left in all)`);
  }

  done(step: string): void {
    const took = this.now() - this.#started;
    this.#usedMs += took;
    this.#usualDoneMs += this.#usual.get(step) ?? 0;
    const i = this.steps.indexOf(step);
    this.say(`${step} done in ${minutes(took)}` + (i + 1 < this.steps.length ? `; about ${minutes(this.left(i + 1))} left` : ''));
  }
}

function minutes(ms: number): string {
  return ms < 90_000 ? `${Math.round(ms / 1000)} s` : `${Math.round(ms / 60_000)} min`;
}
