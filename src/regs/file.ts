/**
 * A register file: the runtime behind one trapped BAR. It places the
 * declared blocks, stores every register's value, applies the declared
 * access semantics (RO/RW/W1C/W1S/WO, write masks, self-clearing bits) and
 * runs the device's hooks. Unknown offsets read 0 and ignore writes, with
 * a warning that names the nearest declared register. Every access can be
 * traced by register name, its fields decoded from the value (at once by
 * an in-memory tracer, when the trace is read for a trace file).
 */
import { type BlockDef, type RegisterDef, decodeFields } from './define.ts';
import { type Tracer, NO_TRACE, TraceRegister, mmioEvent, warn } from '../trace/tracer.ts';
import type { DirectReads } from '../binding/types.ts';
import { SpinWatch, waitingFor } from './spin.ts';

/** power: power-on or PCI-level reset, every register; card: RGCR, the registers declared cardReset 'clear'. */
export type ResetKind = 'power' | 'card';

export interface RegHooks {
  /** The value a read returns (default: the stored value). May have side effects. */
  read?: (stored: number) => number;
  /**
   * Replaces the declared write semantics: returns the value to store.
   * `value` is what the guest wrote (already merged for partial writes).
   */
  write?: (value: number, old: number) => number;
  /** Side effects after the write took effect (and before self-clearing bits drop). */
  postWrite?: (value: number, old: number, now: number) => void;
}

interface Slot {
  def: RegisterDef;
  block: BlockDef;
  /** Absolute offset within the BAR. */
  abs: number;
  hooks: RegHooks;
  /** The register as the trace names it. */
  trace: TraceRegister;
}

export class RegisterFile {
  /** Stored values, one per declared register (slot order). */
  private readonly values: Uint32Array;
  private readonly slots: Slot[] = [];
  /** dword index within the BAR → slot number, or -1. */
  private readonly map: Int32Array;
  /** map, less the slots whose reads need JavaScript (a read hook, write-only): what a binding may read itself. */
  private readonly direct: Int32Array;
  private readonly byName = new Map<string, number>();
  /** Slots a card reset puts back to their reset value. */
  private readonly cardResetSlots: Int32Array;
  /** Guest polls that never see a change (spin.ts). */
  private readonly spin: SpinWatch;
  /** What the trace names an undeclared offset by. */
  private readonly unknownTrace: TraceRegister;
  /** In access(): a piece after the first, traced at the first piece's time. */
  private later = false;

  constructor(
    readonly name: string,
    readonly bar: number,
    readonly size: number,
    readonly blocks: readonly BlockDef[],
    public tracer: Tracer = NO_TRACE,
  ) {
    this.map = new Int32Array(size >>> 2).fill(-1);
    for (const b of blocks) {
      for (const def of b.regs) {
        const abs = b.base + def.offset;
        if (abs + 4 > size) throw new Error(`${name}: ${def.name} at 0x${abs.toString(16)} is outside the ${size}-byte BAR`);
        const d = abs >>> 2;
        if (this.map[d] !== -1) throw new Error(`${name}: ${def.name} overlaps ${this.slots[this.map[d]].def.name}`);
        if (this.byName.has(def.name)) throw new Error(`${name}: register name ${def.name} declared twice`);
        this.map[d] = this.slots.length;
        this.byName.set(def.name, this.slots.length);
        this.slots.push({ def, block: b, abs, hooks: {}, trace: new TraceRegister(bar, b.name, def, abs) });
      }
    }
    this.unknownTrace = new TraceRegister(bar, null, null, -1);
    // Explicit ArrayBuffers: their memory never moves, so a binding may hold on to it (directReads()).
    this.values = new Uint32Array(new ArrayBuffer(4 * this.slots.length));
    this.direct = new Int32Array(new ArrayBuffer(4 * this.map.length));
    for (let d = 0; d < this.map.length; d++) {
      const si = this.map[d];
      this.direct[d] = si >= 0 && this.slots[si].def.access !== 'WO' ? si : -1;
    }
    const cleared: number[] = [];
    this.slots.forEach((s, i) => {
      if ((s.def.cardReset ?? s.block.cardReset) === 'clear') cleared.push(i);
    });
    this.cardResetSlots = Int32Array.from(cleared);
    this.spin = new SpinWatch(this.slots.length, (si, v, n) => this.spinning(si, v, n));
    this.reset();
  }

  /** Registers back to their declared reset values: all of them (power), or those a card reset clears (card). */
  reset(kind: ResetKind = 'power'): void {
    if (kind === 'power') {
      for (let i = 0; i < this.slots.length; i++) this.values[i] = this.slots[i].def.reset;
    } else {
      for (const i of this.cardResetSlots) this.values[i] = this.slots[i].def.reset;
    }
  }

  /** The names of the registers a card reset clears (for docs and tests). */
  clearedOnCardReset(): string[] {
    return Array.from(this.cardResetSlots, (i) => this.slots[i].def.name);
  }

  /** Attach behaviour to a register (by name). */
  hook(name: string, hooks: RegHooks): void {
    const s = this.slots[this.slotOf(name)];
    s.hooks = { ...s.hooks, ...hooks };
    if (s.hooks.read) this.direct[s.abs >>> 2] = -1;
  }

  /**
   * The registers a binding may read without calling into JavaScript
   * (NativeContext.directReads): every declared one without a read hook,
   * not write-only, with the spin watchdog's state. Null while tracing is
   * on: the trace records every access.
   */
  directReads(): DirectReads | null {
    if (this.tracer.enabled) return null;
    return { slot: this.direct, value: this.values, spinValue: this.spin.value, spinReads: this.spin.reads, spinThreshold: this.spin.thresholdCell };
  }

  /** The stored value, for the device's own use (no hooks, no trace). */
  get(name: string): number {
    return this.values[this.slotOf(name)];
  }

  /** Set the stored value, for the device's own use (no hooks, no trace). */
  set(name: string, value: number): void {
    this.values[this.slotOf(name)] = value >>> 0;
  }

  /** A fast handle to one register's stored value. */
  ref(name: string): { get(): number; set(v: number): void } {
    const i = this.slotOf(name);
    const v = this.values;
    return { get: () => v[i], set: (x: number) => { v[i] = x >>> 0; } };
  }

  /** The definition at a BAR offset, or undefined. */
  defAt(offset: number): RegisterDef | undefined {
    const s = this.map[offset >>> 2];
    return s === undefined || s < 0 ? undefined : this.slots[s].def;
  }

  /** All register definitions with their absolute offsets (for docs and tools). */
  listing(): { abs: number; block: string; def: RegisterDef }[] {
    return this.slots.map((s) => ({ abs: s.abs, block: s.block.name, def: s.def }));
  }

  /** A guest read of 1, 2 or 4 bytes at `offset`. */
  read(offset: number, size: 1 | 2 | 4): number {
    const d = offset >>> 2;
    const si = d < this.map.length ? this.map[d] : -1;
    let full = 0;
    if (si >= 0) {
      const s = this.slots[si];
      const stored = this.values[si];
      full = s.def.access === 'WO' ? 0 : s.hooks.read ? s.hooks.read(stored) >>> 0 : stored;
    } else {
      this.undeclared('r', offset, size);
    }
    const shift = (offset & 3) * 8;
    const v = size === 4 ? full : (full >>> shift) & (size === 1 ? 0xff : 0xffff);
    if (this.tracer.enabled) this.traceAccess('r', offset, size, v, si, full, 0);
    return v;
  }

  /** A guest write of 1, 2 or 4 bytes at `offset`. */
  write(offset: number, size: 1 | 2 | 4, value: number): void {
    const d = offset >>> 2;
    const si = d < this.map.length ? this.map[d] : -1;
    if (si < 0) {
      this.undeclared('w', offset, size, value >>> 0);
      if (this.tracer.enabled) this.traceAccess('w', offset, size, value >>> 0, -1, 0, 0);
      return;
    }
    const s = this.slots[si];
    const shift = (offset & 3) * 8;
    const laneMask = size === 4 ? 0xffffffff : ((size === 1 ? 0xff : 0xffff) << shift) >>> 0;
    const old = this.values[si];
    // The written value spread over the whole register; bits outside the lane keep the old value.
    const wval = size === 4 ? value >>> 0 : (((value << shift) & laneMask) | (old & ~laneMask)) >>> 0;
    let now: number;
    if (s.hooks.write) {
      now = s.hooks.write(wval, old) >>> 0;
    } else {
      const m = s.def.writeMask & laneMask;
      switch (s.def.access) {
        case 'RO': now = old; break;
        case 'RW': case 'WO': now = ((old & ~m) | (wval & m)) >>> 0; break;
        case 'W1C': now = (old & ~(wval & m)) >>> 0; break;
        case 'W1S': now = (old | (wval & m)) >>> 0; break;
      }
    }
    this.values[si] = now;
    // The trace shows what a read will return: self-clearing bits already dropped.
    if (this.tracer.enabled) this.traceAccess('w', offset, size, value >>> 0, si, wval, (now & ~s.def.selfClear) >>> 0);
    if (s.hooks.postWrite) s.hooks.postWrite(wval, old, this.values[si]);
    if (s.def.selfClear) this.values[si] &= ~s.def.selfClear;
  }

  /**
   * Serve an access of any length from a byte buffer (the binding's
   * scratch). A hook that throws is an emulator bug: it is reported as an
   * 'internal' warning and the piece reads 0, so the guest sees a dropped
   * access, not a dead device.
   */
  access(offset: number, buf: Buffer, len: number, isWrite: boolean): void {
    let pos = 0;
    while (pos < len) {
      const off = offset + pos;
      // Largest naturally aligned piece (4, 2 or 1 bytes) that fits.
      const left = len - pos;
      const size: 1 | 2 | 4 = (off & 3) === 0 && left >= 4 ? 4 : (off & 1) === 0 && left >= 2 ? 2 : 1;
      this.later = pos > 0;
      try {
        const si = this.map[off >>> 2] ?? -1;
        if (isWrite) {
          const v = size === 4 ? buf.readUInt32LE(pos) : size === 2 ? buf.readUInt16LE(pos) : buf[pos];
          this.write(off, size, v);
          if (si >= 0) this.spin.write(si);
        } else {
          const v = this.read(off, size);
          if (si >= 0) this.spin.read(si, v);
          if (size === 4) buf.writeUInt32LE(v, pos);
          else if (size === 2) buf.writeUInt16LE(v, pos);
          else buf[pos] = v;
        }
      } catch (e) {
        if (!isWrite) buf.fill(0, pos, pos + size);
        const r = this.defAt(off);
        warn(this.tracer, 'internal', `${this.name}: ${isWrite ? 'write' : 'read'} of ${r ? r.name : `0x${off.toString(16)}`} failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`, { bar: this.bar, off, reg: r?.name ?? null });
      }
      pos += size;
    }
    this.later = false;
  }

  /** Reads of one register without a change that make a spin warning (0: off; default SPIN_READS). */
  set spinThreshold(n: number) {
    this.spin.threshold = n;
  }

  private spinning(si: number, value: number, reads: number): void {
    const s = this.slots[si];
    const fields = waitingFor(s.def, value);
    const hex = (v: number) => `0x${(v >>> 0).toString(16)}`;
    const wait = fields.length ? `; it seems to wait for ${fields.join(', ')}` : '';
    warn(this.tracer, 'spin', `${this.name}: the guest read ${s.block.name}.${s.def.name} ${reads} times and it stayed ${hex(value)}${wait} (an emulation gap?)`, {
      bar: this.bar,
      off: s.abs,
      block: s.block.name,
      reg: s.def.name,
      val: value,
      reads,
      fields: s.def.fields.length ? decodeFields(s.def, value) : undefined,
      waitingFor: fields,
    });
  }

  /** The declared register nearest to `offset` (by absolute offset), if any. */
  nearest(offset: number): { block: string; reg: string; abs: number } | undefined {
    let best: Slot | undefined;
    for (const s of this.slots) {
      if (!best || Math.abs(s.abs - offset) < Math.abs(best.abs - offset)) best = s;
    }
    return best && { block: best.block.name, reg: best.def.name, abs: best.abs };
  }

  /** A guest access no register covers: reads 0, writes are dropped; warn. */
  private undeclared(op: 'r' | 'w', offset: number, size: number, value?: number): void {
    const hex = (v: number) => `0x${v.toString(16)}`;
    const n = this.nearest(offset);
    const near = n ? `; nearest is ${n.block}.${n.reg} at ${hex(n.abs)} (${offset >= n.abs ? '+' : '-'}${hex(Math.abs(offset - n.abs))})` : '';
    const what = op === 'w' ? `write of ${hex(value ?? 0)}` : 'read';
    warn(this.tracer, 'mmio-undeclared', `${this.name}: guest ${size}-byte ${what} at undeclared offset ${hex(offset)}${near}`, {
      bar: this.bar,
      op,
      off: offset,
      size,
      ...(op === 'w' ? { val: value } : {}),
      ...(n ? { nearest: `${n.block}.${n.reg}` } : {}),
    });
  }

  private slotOf(name: string): number {
    const i = this.byName.get(name);
    if (i === undefined) throw new Error(`${this.name}: no register named ${name}`);
    return i;
  }

  /**
   * `word` is what the fields decode from: a read, the register's value; a
   * write, the value the guest wrote spread over the whole register. `now`
   * (writes): the register after the write, as a read will return it.
   * Raw to a tracer that takes it (the trace file: no decoding, no object
   * per access), else decoded (mmioEvent()).
   */
  private traceAccess(op: 'r' | 'w', offset: number, size: number, value: number, si: number, word: number, now: number): void {
    const t = this.tracer;
    const r = si < 0 ? this.unknownTrace : this.slots[si].trace;
    if (t.access) t.access(r, op, offset, size, value, word, now, this.later);
    else t.mmio(mmioEvent(r, op, offset, size, value, word, now));
  }
}
