/**
 * A fake clock and scheduler for device tests: DeviceEnv's schedule() and
 * after() with nothing running until the test says so (drain(), advance()).
 */
export class FakeClock {
  /** Milliseconds since the start, moved only by advance(). */
  now = 0;
  /** How many times schedule() was called. */
  scheduled = 0;
  private queue: (() => void)[] = [];
  private timers: { at: number; fn: () => void; live: boolean }[] = [];

  /** Run `fn` at the next drain(). */
  readonly schedule = (fn: () => void): void => {
    this.scheduled++;
    this.queue.push(fn);
  };

  /** Run `fn` once advance() has moved the clock `ms` further; returns a cancel function. */
  readonly after = (ms: number, fn: () => void): (() => void) => {
    const t = { at: this.now + ms, fn, live: true };
    this.timers.push(t);
    return () => {
      t.live = false;
    };
  };

  /** Work scheduled and not yet run. */
  queued(): number {
    return this.queue.length;
  }

  /** Run scheduled work, round by round, until none is left (or `max` rounds); returns the rounds run. */
  drain(max = 10_000): number {
    let n = 0;
    while (this.queue.length && n < max) {
      const q = this.queue;
      this.queue = [];
      for (const fn of q) fn();
      n++;
    }
    return n;
  }

  /** Move the clock forward, firing the timers that fall due, in the order they were set. */
  advance(ms: number): void {
    this.now += ms;
    for (const t of this.timers) {
      if (t.live && t.at <= this.now) {
        t.live = false;
        t.fn();
      }
    }
    this.timers = this.timers.filter((t) => t.live);
  }
}
