/**
 * The spin watchdog: a guest that reads one register many times over
 * (default 10,000) without its value changing is usually waiting for a
 * bit the model never sets, the common sign of an emulation gap. One
 * warning per register and value; a change of value or a write re-arms it.
 */
import type { RegisterDef } from './define.ts';

export const SPIN_READS = 10_000;

export class SpinWatch {
  /** Slot → the value last read, and reads of it without a change; shared with a binding's DirectReads, which keeps them for the reads it serves. */
  readonly value: Uint32Array;
  readonly reads: Uint32Array;
  /** [0]: the threshold (shared too). */
  readonly thresholdCell = new Uint32Array(new ArrayBuffer(4));

  constructor(
    slots: number,
    private readonly onSpin: (slot: number, value: number, reads: number) => void,
  ) {
    // Explicit ArrayBuffers: their memory never moves, so a binding may hold on to it.
    this.value = new Uint32Array(new ArrayBuffer(4 * slots));
    this.reads = new Uint32Array(new ArrayBuffer(4 * slots));
    this.threshold = SPIN_READS;
  }

  /** Reads without a change that make a spin; 0: off. */
  get threshold(): number {
    return this.thresholdCell[0];
  }

  set threshold(n: number) {
    this.thresholdCell[0] = n;
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
