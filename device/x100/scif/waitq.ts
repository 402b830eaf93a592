/**
 * wait_event() for the card's SCIF code: a waiter re-checks its condition
 * on every wake_up() and gives up after its timeout. Timers come from the
 * device's clock (DeviceEnv.after), so fake clocks drive them in tests.
 */
export type After = (ms: number, fn: () => void) => () => void;

interface Waiter {
  cond: () => boolean;
  done: (ok: boolean) => void;
}

export class WaitQueue {
  private waiters = new Set<Waiter>();

  constructor(private readonly after: After) {}

  /** Resolves true once `cond()` holds (checked now and at each wake), false on timeout. */
  wait(cond: () => boolean, timeoutMs?: number): Promise<boolean> {
    if (cond()) return Promise.resolve(true);
    return new Promise((resolve) => {
      let cancel: (() => void) | null = null;
      const w: Waiter = {
        cond,
        done: (ok) => {
          this.waiters.delete(w);
          cancel?.();
          resolve(ok);
        },
      };
      this.waiters.add(w);
      if (timeoutMs !== undefined) cancel = this.after(timeoutMs, () => w.done(w.cond()));
    });
  }

  wake(): void {
    for (const w of [...this.waiters]) {
      let ok: boolean;
      try {
        ok = w.cond();
      } catch {
        ok = true; // let the waiter find out what went wrong
      }
      if (ok) w.done(true);
    }
  }

  get length(): number {
    return this.waiters.size;
  }
}
