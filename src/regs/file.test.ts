import { describe, expect, it } from 'vitest';
import { bit, block, blockArray, field, layout, reg, regArray, decodeFields, setField, getField, wideField } from './define.ts';
import { RegisterFile } from './file.ts';
import { memoryTracer, untraced, type Tracer } from '../trace/tracer.ts';

const TEST = block('test', 0x100, 'a test block', [
  reg('CTRL', 0x0, 'RW', 0x55, 'control', [field('MODE', 0, 4, 'mode'), bit('GO', 31, 'start')], { selfClear: 0x80000000 }),
  reg('STAT', 0x4, 'W1C', 0, 'status', [bit('DONE', 0, 'done'), bit('ERR', 1, 'error')]),
  reg('ID', 0x8, 'RO', 0x8086225c, 'identity'),
  reg('SET', 0xc, 'W1S', 0, 'set-only'),
  reg('MASKED', 0x10, 'RW', 0, 'low byte writable', [], { writeMask: 0xff }),
  regArray('SPAD', 4, 0x20, 4, 'RW', (i) => i * 0x10, 'scratchpad'),
]);

function make() {
  const t = memoryTracer();
  const f = new RegisterFile('bar', 4, 0x1000, [TEST], t);
  return { f, t };
}

describe('register definitions', () => {
  it('rejects misaligned and overlapping registers', () => {
    expect(() => reg('X', 2, 'RW', 0, '')).toThrow(/aligned/);
    expect(() => block('b', 0, '', [reg('A', 0, 'RW', 0, ''), reg('B', 0, 'RW', 0, '')])).toThrow(/overlaps/);
    expect(() => field('F', 30, 4, '')).toThrow(/outside/);
  });

  it('gets, sets and decodes fields', () => {
    const ctrl = TEST.regs[0];
    expect(decodeFields(ctrl, 0x80000003)).toEqual({ MODE: 3, GO: 1 });
    expect(setField(0xffffffff, ctrl.fields[0], 0)).toBe(0xfffffff0);
    expect(getField(0x80000000, ctrl.fields[1])).toBe(1);
  });

  it('reads and writes fields by name, with masks computed once', () => {
    const r = reg('R', 0, 'RW', 0, '', [field('LO', 0, 4, ''), field('MID', 4, 17, ''), bit('TOP', 31, ''), field('ALL', 0, 32, '')]);
    expect(r.f.MID.ex(0xf0123450)).toBe(0x12345);
    expect(r.f.MID.dp(0xffffffff, 0)).toBe(0xffe0000f);
    expect(r.f.MID.mask).toBe(0x1ffff0);
    expect(r.f.TOP.val(1)).toBe(0x80000000);
    expect(r.f.TOP.isSet(0x80000000)).toBe(true);
    expect(r.f.ALL.ex(-1)).toBe(0xffffffff);
    expect(r.f.ALL.dp(5, 0xdeadbeef)).toBe(0xdeadbeef);
    // @ts-expect-error a misspelt field name does not type-check
    expect(r.f.MIDD).toBeUndefined();
    // @ts-expect-error nor does a self-clearing bit that names no field
    expect(() => reg('S', 0, 'RW', 0, '', [bit('GO', 0, '')], { selfClear: 'G0' })).toThrow(/no field G0/);
    expect(reg('S', 0, 'RW', 0, '', [bit('GO', 3, '')], { selfClear: 'GO' }).selfClear).toBe(8);
    expect(() => reg('D', 0, 'RW', 0, '', [bit('A', 0, ''), bit('A', 1, '')])).toThrow(/twice/);
  });

  it('decode memory structures across words (a 16-byte DMA descriptor)', () => {
    const d = layout('desc', 16, '', [wideField('SRC', 0, 40, ''), wideField('LEN', 46, 14, ''), wideField('DST', 64, 40, ''), wideField('TYPE', 124, 4, ''), wideField('DATA', 0, 64, '')]);
    const w = new Uint32Array([0x89abcdef, (0x3fff << 14) | 0x67, 0x00001000, 0x10000001]);
    expect(d.f.SRC.ex(w)).toBe(0x67_89abcdef);
    expect(d.f.LEN.ex(w)).toBe(0x3fff);
    expect(d.f.DST.ex(w)).toBe(0x01_00001000);
    expect(d.f.TYPE.ex(w)).toBe(1);
    expect(d.f.DATA.bytes(new Uint8Array(16).fill(7)).length).toBe(8);
    expect(d.decode(w)).toEqual({ SRC: 0x67_89abcdef, LEN: 0x3fff, DST: 0x01_00001000, TYPE: 1 });
    expect(() => layout('x', 8, '', [wideField('F', 60, 8, '')])).toThrow(/outside 64 bits/);
  });

  it('names array elements and gives each its reset', () => {
    const { f } = make();
    expect(f.get('SPAD0')).toBe(0);
    expect(f.get('SPAD3')).toBe(0x30);
    expect(f.defAt(0x12c)?.name).toBe('SPAD3');
    expect(f.defAt(0x12c)?.group).toBe('SPAD');
  });
});

describe('register file access semantics', () => {
  it('applies reset values', () => {
    const { f } = make();
    expect(f.read(0x100, 4)).toBe(0x55);
    expect(f.read(0x108, 4)).toBe(0x8086225c);
  });

  it('RW stores, RO ignores, W1S sets', () => {
    const { f } = make();
    f.write(0x100, 4, 0x7);
    expect(f.read(0x100, 4)).toBe(0x7);
    f.write(0x108, 4, 0);
    expect(f.read(0x108, 4)).toBe(0x8086225c);
    f.write(0x10c, 4, 0x1);
    f.write(0x10c, 4, 0x4);
    expect(f.read(0x10c, 4)).toBe(0x5);
  });

  it('W1C clears only the bits written as 1', () => {
    const { f } = make();
    f.set('STAT', 0x3);
    f.write(0x104, 4, 0x1);
    expect(f.read(0x104, 4)).toBe(0x2);
    f.write(0x104, 4, 0x0);
    expect(f.read(0x104, 4)).toBe(0x2);
  });

  it('honours write masks and self-clearing bits', () => {
    const { f } = make();
    f.write(0x110, 4, 0xffffffff);
    expect(f.read(0x110, 4)).toBe(0xff);
    let sawGo = false;
    f.hook('CTRL', { postWrite: (_v, _o, now) => { sawGo = (now >>> 31) === 1; } });
    f.write(0x100, 4, 0x80000001);
    expect(sawGo).toBe(true);
    expect(f.read(0x100, 4)).toBe(0x1);
  });

  it('merges partial (byte and halfword) writes and reads', () => {
    const { f } = make();
    f.write(0x120, 4, 0x11223344);
    f.write(0x121, 1, 0xaa);
    expect(f.read(0x120, 4)).toBe(0x1122aa44);
    expect(f.read(0x122, 2)).toBe(0x1122);
    expect(f.read(0x123, 1)).toBe(0x11);
    // A byte write to a W1C register leaves the other lanes alone.
    f.set('STAT', 0x0101);
    f.write(0x105, 1, 0x01);
    expect(f.get('STAT')).toBe(0x0001);
  });

  it('serves multi-register buffers (8-byte accesses split into dwords)', () => {
    const { f } = make();
    const b = Buffer.alloc(8);
    b.writeUInt32LE(0xdead, 0);
    b.writeUInt32LE(0xbeef, 4);
    f.access(0x120, b, 8, true);
    expect(f.get('SPAD0')).toBe(0xdead);
    expect(f.get('SPAD1')).toBe(0xbeef);
    const r = Buffer.alloc(8);
    f.access(0x120, r, 8, false);
    expect(r.equals(b)).toBe(true);
  });

  it('runs read hooks and write hooks', () => {
    const { f } = make();
    f.hook('SPAD2', { read: (v) => v + 1, write: (v) => v * 2 });
    f.write(0x128, 4, 5);
    expect(f.get('SPAD2')).toBe(10);
    expect(f.read(0x128, 4)).toBe(11);
  });

  it('reads 0 and ignores writes at unknown offsets, and traces them as unknown', () => {
    const { f, t } = make();
    f.write(0x800, 4, 0x1234);
    expect(f.read(0x800, 4)).toBe(0);
    expect(t.events).toEqual([
      expect.objectContaining({ kind: 'mmio', op: 'w', off: 0x800, unknown: true, reg: null }),
      expect.objectContaining({ kind: 'mmio', op: 'r', off: 0x800, unknown: true, val: 0 }),
    ]);
  });

  it('traces accesses decoded by register and field name', () => {
    const { f, t } = make();
    f.write(0x100, 4, 0x80000002);
    f.read(0x108, 4);
    f.write(0x108, 4, 1);
    expect(t.events[0]).toMatchObject({ kind: 'mmio', bar: 4, op: 'w', off: 0x100, reg: 'CTRL', block: 'test', val: 0x80000002, now: 0x2, fields: { MODE: 2, GO: 1 } });
    expect(t.events[1]).toMatchObject({ op: 'r', reg: 'ID', val: 0x8086225c });
    expect(t.events[2]).toMatchObject({ op: 'w', reg: 'ID', ignored: true });
  });

  it('hands a tracer that takes raw accesses the register, the value, the word its fields decode from and the register after', () => {
    const raw: unknown[][] = [];
    const mem = memoryTracer();
    const t: Tracer = { ...mem, access: (r, op, off, size, val, word, now, later) => raw.push([r.block, r.def?.name ?? null, op, off, size, val, word, now, later]) };
    const f = new RegisterFile('bar', 4, 0x1000, [TEST], t);
    f.write(0x100, 4, 0x80000002); // CTRL.GO self-clears
    f.write(0x101, 1, 0xab); // a byte: the word is the byte over the old value
    f.read(0x102, 2); // a halfword: the word is the whole register
    f.write(0x800, 4, 5);
    f.access(0x120, Buffer.alloc(8), 8, false); // one guest access, two pieces
    expect(raw).toEqual([
      ['test', 'CTRL', 'w', 0x100, 4, 0x80000002, 0x80000002, 0x2, false],
      ['test', 'CTRL', 'w', 0x101, 1, 0xab, 0xab02, 0xab02, false],
      ['test', 'CTRL', 'r', 0x102, 2, 0, 0xab02, 0, false],
      [null, null, 'w', 0x800, 4, 5, 0, 0, false],
      ['test', 'SPAD0', 'r', 0x120, 4, 0, 0, 0, false],
      ['test', 'SPAD1', 'r', 0x124, 4, 0x10, 0x10, 0, true],
    ]);
    expect(mem.events).toEqual([]);
  });

  it('warns about an undeclared offset with tracing off, naming the nearest register', () => {
    const warned: [string, string, Record<string, unknown> | undefined][] = [];
    const f = new RegisterFile('bar4', 4, 0x1000, [TEST], untraced((k, m, d) => warned.push([k, m, d])));
    f.write(0x134, 4, 0x1234);
    expect(warned).toHaveLength(1);
    expect(warned[0][0]).toBe('mmio-undeclared');
    expect(warned[0][1]).toMatch(/bar4: guest 4-byte write of 0x1234 at undeclared offset 0x134; nearest is test\.SPAD3 at 0x12c \(\+0x8\)/);
    expect(warned[0][2]).toMatchObject({ bar: 4, op: 'w', off: 0x134, nearest: 'test.SPAD3' });
    f.read(0xf0, 4);
    expect(warned[1][1]).toMatch(/read at undeclared offset 0xf0; nearest is test\.CTRL at 0x100 \(-0x10\)/);
    f.read(0x100, 4);
    expect(warned).toHaveLength(2);
  });

  it('turns a hook that throws into an internal warning and a read of 0', () => {
    const warned: string[] = [];
    const f = new RegisterFile('bar4', 4, 0x1000, [TEST], untraced((k, m) => warned.push(`${k} ${m}`)));
    f.hook('SPAD1', { read: () => { throw new Error('boom'); } });
    const b = Buffer.alloc(8, 0xff);
    f.access(0x120, b, 8, false);
    expect(b.readUInt32LE(4)).toBe(0);
    expect(warned).toHaveLength(1);
    expect(warned[0]).toMatch(/^internal bar4: read of SPAD1 failed: Error: boom/);
  });

  it('card reset puts back only the registers declared cardReset clear', () => {
    const chans = blockArray('ch', 2, 0x400, 0x10, (i) => `channel ${i}`, [reg('CTL', 0, 'RW', 7, ''), reg('KEPT', 4, 'RW', 0, '', [], { cardReset: 'keep' })], { cardReset: 'clear' });
    const odd = block('odd', 0x500, '', [reg('ONE', 0, 'RW', 1, '', [], { cardReset: 'clear' }), reg('OTHER', 4, 'RW', 0, '')]);
    const f = new RegisterFile('bar', 4, 0x1000, [TEST, ...chans, odd]);
    expect(f.clearedOnCardReset()).toEqual(['CTL0', 'CTL1', 'ONE']);
    expect(f.defAt(0x414)?.name).toBe('KEPT1');
    for (const n of ['CTL0', 'CTL1', 'KEPT0', 'ONE', 'OTHER', 'SPAD0']) f.set(n, 0x99);
    f.reset('card');
    expect(['CTL0', 'CTL1', 'KEPT0', 'ONE', 'OTHER', 'SPAD0'].map((n) => f.get(n))).toEqual([7, 7, 0x99, 1, 0x99, 0x99]);
    f.reset('power');
    expect(['KEPT0', 'OTHER', 'SPAD0'].map((n) => f.get(n))).toEqual([0, 0, 0]);
  });

  it('resets every register', () => {
    const { f } = make();
    f.write(0x100, 4, 0);
    f.write(0x124, 4, 9);
    f.reset();
    expect(f.get('CTRL')).toBe(0x55);
    expect(f.get('SPAD1')).toBe(0x10);
  });
});

describe('the spin watchdog', () => {
  const guestRead = (f: RegisterFile, off: number) => {
    const b = Buffer.alloc(4);
    f.access(off, b, 4, false);
    return b.readUInt32LE();
  };

  it('warns once when the guest reads a register 10,000 times without a change, naming it, its value and the fields it seems to wait for', () => {
    const { f, t } = make();
    for (let i = 0; i < 9_999; i++) guestRead(f, 0x104); // STAT: DONE, ERR
    expect(t.warnings.filter((w) => w.kind === 'spin')).toEqual([]);
    for (let i = 0; i < 20_000; i++) guestRead(f, 0x104);
    const spins = t.warnings.filter((w) => w.kind === 'spin');
    expect(spins).toHaveLength(1);
    expect(spins[0]).toMatchObject({ reg: 'STAT', block: 'test', val: 0, reads: 10_000, waitingFor: ['DONE', 'ERR'] });
    expect(String(spins[0].msg)).toMatch(/test\.STAT 10000 times.*0x0.*wait for DONE, ERR/);
  });

  it('a change of value or a guest write re-arms it; reads of other registers do not break a spin', () => {
    const { f, t } = make();
    const spins = () => t.warnings.filter((w) => w.kind === 'spin').length;
    for (let i = 0; i < 5_000; i++) guestRead(f, 0x104);
    f.set('STAT', 1); // the value changed: counting starts again
    for (let i = 0; i < 9_000; i++) {
      guestRead(f, 0x104);
      guestRead(f, 0x108); // ID, interleaved
    }
    expect(spins()).toBe(0);
    for (let i = 0; i < 1_000; i++) guestRead(f, 0x104);
    expect(spins()).toBe(1); // STAT at 10,000; ID at 9,000, not yet
    const n = spins();
    f.access(0x104, Buffer.from([1, 0, 0, 0]), 4, true); // W1C write re-arms
    for (let i = 0; i < 9_999; i++) guestRead(f, 0x104);
    expect(spins()).toBe(n);
    guestRead(f, 0x104);
    expect(spins()).toBe(n + 1);
  });

  it('spinThreshold 0 turns it off', () => {
    const { f, t } = make();
    f.spinThreshold = 0;
    for (let i = 0; i < 20_000; i++) guestRead(f, 0x104);
    expect(t.warnings.filter((w) => w.kind === 'spin')).toEqual([]);
  });
});
