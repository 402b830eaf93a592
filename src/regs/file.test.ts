import { describe, expect, it } from 'vitest';
import { bit, block, field, reg, regArray, decodeFields, setField, getField } from './define.ts';
import { RegisterFile } from './file.ts';
import { memoryTracer } from '../trace/tracer.ts';

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

  it('resets every register', () => {
    const { f } = make();
    f.write(0x100, 4, 0);
    f.write(0x124, 4, 9);
    f.reset();
    expect(f.get('CTRL')).toBe(0x55);
    expect(f.get('SPAD1')).toBe(0x10);
  });
});
