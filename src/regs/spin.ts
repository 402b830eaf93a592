/**
 * The spin watchdog: a guest that reads one register many times over
 * (default 10,000) without its value changing is usually waiting for a
 * bit the model never sets, the common sign of an emulation gap. One
 * warning per register and value; a change of value or a write re-arms it.
 */
import type { RegisterDef } from './define.ts';

export const SPIN_READS = 10_000;

export class SpinWatch {
  private readonly value: Uint32Array;
  private readonly reads: Uint32Array;

  /** Reads without a change that make a spin; 0: off. */
  threshold = SPIN_READS;

  constructor(
    slots: number,
    private readonly onSpin: (slot: number, value: number, reads: number) => void,
  ) {
    this.value = new Uint32Array(slots);
    this.reads = new Uint32Array(slots);
  }

  /** A guest read of slot that returned `value` (the whole register). */
  read(slot: number, value: number): void {
    if (this.threshold === 0) return;
    if (this.reads[slot] === 0 || this.value[slot] !== value) {
      this.value[slot] = value;
      this.reads[slot] = 1;
      return;
    }
    // Stops counting at the threshold: one warning until the value changes.
    if (this.reads[slot] < this.threshold && ++this.reads[slot] === this.threshold) this.onSpin(slot, value, this.threshold);
  }

  /** A guest write: whatever it polled, the guest moved on. */
  write(slot: number): void {
    this.reads[slot] = 0;
  }
}

/** The fields a poll of `reg` at `value` most likely waits for: those now 0 (polls wait for a bit to be set), else all. */
export function waitingFor(reg: RegisterDef, value: number): string[] {
  const zero = reg.fields.filter((f) => f.ex(value) === 0).map((f) => f.name);
  return zero.length ? zero : reg.fields.map((f) => f.name);
}
