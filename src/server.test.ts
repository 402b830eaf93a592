import { describe, expect, it } from 'vitest';
import { MockBinding } from './binding/mock.ts';
import { DeviceServer } from './server.ts';
import { type Tracer, memoryTracer, untraced } from './trace/tracer.ts';
import { fakeSpec } from './testing/fake-device.ts';
import { IRQ_TYPE, REGION } from './binding/types.ts';

function start<T extends Tracer = ReturnType<typeof memoryTracer>>(tracer: T = memoryTracer() as unknown as T) {
  const b = new MockBinding();
  const s = new DeviceServer(b, fakeSpec({ apertureSize: 1 << 20 }), { socketPath: '/tmp/vphi-test.sock', tracer });
  return { b, s, m: b.last, tracer };
}

describe('DeviceServer over the mock binding', () => {
  it('creates the context from the card description', () => {
    const { m } = start();
    expect(m.options.pci).toMatchObject({ vendorId: 0x8086, deviceId: 0x225c, revision: 0x20, classCode: 0x0b4000 });
    expect(m.options.regions.map((r) => [r.index, r.kind, r.size])).toEqual([
      [0, 'memfd', 1 << 20],
      [2, 'trapped', 0x2000],
      [4, 'trapped', 0x20000],
    ]);
    expect(m.options.msix).toEqual({ vectors: 16, bar: 2 });
    expect(m.options.barFlags[0]).toEqual({ index: 0, is64: true, prefetchable: true });
  });

  it('routes trapped BAR4 accesses to the register file and traces them by name', () => {
    const { m, tracer } = start();
    m.connect();
    m.write(REGION.BAR4, 0x1ab20, 4, 0xc0de0000);
    expect(m.read(REGION.BAR4, 0x1ab20, 4)).toBe(0xc0de0000);
    expect(m.read(REGION.BAR4, 0x1ab28, 4)).toBe(0x00020001); // SPAD2: ready, download at 1 MiB / 8
    expect(tracer.events.filter((e) => e.kind === 'mmio')).toEqual([
      expect.objectContaining({ op: 'w', reg: 'SPAD0', val: 0xc0de0000 }),
      expect.objectContaining({ op: 'r', reg: 'SPAD0', val: 0xc0de0000 }),
      expect.objectContaining({ op: 'r', reg: 'SPAD2', fields: { READY: 1, APIC_ID: 0, DOWNLOAD_ADDR: 0x20 } }),
    ]);
  });

  it('with tracing off, lets the binding serve plain register reads (directReads) and still warns when the guest spins on one', () => {
    const warned: [string, string][] = [];
    const { m } = start(untraced((kind, msg) => warned.push([kind, msg])));
    m.connect();
    let calls = 0;
    const onAccess = m.callbacks.onAccess;
    m.callbacks.onAccess = (...a) => {
      calls++;
      onAccess(...a);
    };
    m.write(REGION.BAR4, 0x1ab20, 4, 0xc0de0000); // writes: the register file's
    expect(calls).toBe(1);
    expect(m.read(REGION.BAR4, 0x1ab20, 4)).toBe(0xc0de0000);
    expect(m.read(REGION.BAR4, 0x1ab20, 8)).toBe(0x00000000c0de0000n);
    expect(calls).toBe(1);
    m.read(REGION.BAR4, 0x1a020, 4); // DSTAT0 has a read hook (the engine runs first)
    expect(calls).toBe(2);
    // The 10,000th read of an unchanged SPAD0 (the 8-byte read was one) reaches the register file, which warns.
    for (let i = 0; i < 9_998; i++) m.read(REGION.BAR4, 0x1ab20, 4);
    expect([calls, warned.filter(([k]) => k === 'spin').length]).toEqual([3, 1]);
    expect(warned.find(([k]) => k === 'spin')?.[1]).toMatch(/SPAD0 10000 times/);
  });

  it('serves 8-byte accesses as two registers', () => {
    const { m } = start();
    m.connect();
    m.write(REGION.BAR4, 0x1ab58, 8, 0x0000008000013000n);
    expect(m.read(REGION.BAR4, 0x1ab58, 4)).toBe(0x13000);
    expect(m.read(REGION.BAR4, 0x1ab5c, 4)).toBe(0x80);
  });

  it('shares BAR0 memory with the card', () => {
    const { s, m } = start();
    m.regionMemory(0).write('hello', 0x100);
    expect(s.device.aperture.subarray(0x100, 0x105).toString()).toBe('hello');
  });

  it('turns libvfio-user config-space log lines into decoded trace events', () => {
    const { m, tracer } = start();
    expect(m.logLevel).toEqual([7]);
    m.callbacks.onLog(7, 'region7: read 0x8086 from (0:2)');
    m.callbacks.onLog(7, 'region7: wrote 0x8000 to (0x42:2)');
    m.callbacks.onLog(7, 'region4: read 0 from (0x1ab20:4)');
    expect(tracer.events.filter((e) => e.kind === 'cfg')).toEqual([
      expect.objectContaining({ op: 'r', off: 0, size: 2, val: 0x8086, reg: 'VENDOR_ID' }),
      expect.objectContaining({ op: 'w', off: 0x42, val: 0x8000, reg: 'MSIX.CTRL' }),
    ]);
  });

  it('keeps the debug log off when tracing is off', () => {
    const b = new MockBinding();
    new DeviceServer(b, fakeSpec({ apertureSize: 1 << 20 }), { socketPath: '/tmp/x.sock' });
    expect(b.last.logLevel).toEqual([]);
  });

  it('maps and unmaps guest RAM, refusing a region without an fd', () => {
    const logs: string[] = [];
    const b = new MockBinding();
    const s = new DeviceServer(b, fakeSpec({ apertureSize: 1 << 20 }), {
      socketPath: '/tmp/x.sock',
      log: (_l, msg) => logs.push(msg),
    });
    const m = b.last;
    m.connect();
    const ram = new ArrayBuffer(0x10000);
    m.dmaMap(0x100000n, ram);
    m.dmaMap(0x0n, null, 0x1000);
    s.host.writeU32(0x100010n, 0xfeedface);
    expect(new DataView(ram).getUint32(0x10, true)).toBe(0xfeedface);
    expect(() => s.host.readU32(0x0n)).toThrow(/without an fd/);
    expect(logs.some((l) => /guest RAM arrived without an fd, so the card cannot reach it; guest RAM must be memory-backend-memfd,share=on/.test(l))).toBe(true);
    m.dmaUnmap(0x100000n);
    expect(() => s.host.readU32(0x100010n)).toThrow(/no guest memory mapped/);
  });

  it('resets the card when the client goes away, keeping card memory', () => {
    const { s, m } = start();
    m.connect();
    m.write(REGION.BAR4, 0x1ab20, 4, 7);
    s.device.aperture[0] = 0x5a;
    m.disconnect();
    m.connect(); // the next client
    expect(m.read(REGION.BAR4, 0x1ab20, 4)).toBe(0);
    expect(s.device.aperture[0]).toBe(0x5a);
  });

  it('delivers a pending MSI-X vector once the client hands over its eventfd', () => {
    const { s, m } = start();
    m.connect();
    m.enableMsix();
    s.irq.raise(3, 'test');
    expect(m.triggered).toEqual([]);
    expect(s.irq.pending[3]).toBe(1);
    m.giveEventfd(3);
    m.callbacks.onPoll?.();
    expect(m.triggered).toEqual([[IRQ_TYPE.MSIX, 3]]);
    expect(s.irq.pending[3]).toBe(0);
  });

  it('closes the context and the trace once', () => {
    const { s, m } = start();
    s.close();
    s.close();
    expect(m.closed).toBe(true);
  });
});

describe('DMA regions without an fd', () => {
  it('are expected for the card\'s own BARs and ROMs, and an error for guest RAM', () => {
    const logs: [string, string][] = [];
    const b = new MockBinding();
    new DeviceServer(b, fakeSpec({ apertureSize: 1 << 20 }), { socketPath: '/tmp/x.sock', log: (l, m) => logs.push([l, m]) });
    const m = b.last;
    m.connect();
    logs.length = 0; // 'client attached'
    m.config.writeUInt32LE(0xc000000c, 0x10); // BAR0: 64-bit prefetchable at 0xc0000000
    m.config.writeUInt32LE(0, 0x14);
    m.dmaMap(0xc0000000n, null, 0x100000);
    m.dmaMap(0xfeb80000n, null, 0x40000);
    m.dmaMap(0x0n, null, 0x100000);
    expect(logs).toEqual([
      ['info', 'ignoring DMA region 0xc0000000+0x100000: it is this card\'s own BAR0'],
      ['info', 'DMA region 0xfeb80000+0x40000 arrived without an fd: the card cannot reach it'],
      ['error', expect.stringMatching(/^refusing DMA region 0x0\+0x100000: .*memory-backend-memfd,share=on$/)],
    ]);
  });
});
