/**
 * The binding contract as one test suite: every rule written in types.ts
 * that can be seen through the Binding interface, run against each
 * implementation (contract.test.ts: the mock and the native addon), in the
 * manner of serialport/bindings-cpp's shared binding tests. A client
 * driver plays QEMU for each: the mock's simulated client, or a raw
 * vfio-user client on the native socket.
 */
import { describe, expect, it } from 'vitest';

import { quietCallbacks, testOptions, until } from './raw-client.ts';
import { IRQ_TYPE, REGION, RESET_TYPE } from './types.ts';
import type { Binding, ContextCallbacks, ContextOptions, DirectReads, DmaRegionInfo, IrqType, NativeContext } from './types.ts';

const EBUSY = 16;
const EIO = 5;
const LOG_ERR = 3;
const MIB = 1024 * 1024;

/** The answer to one client request: 0 or an errno, and the data read. */
export interface ClientReply {
  error: number;
  data: Buffer;
}

/** What a client (QEMU) does to a context, as far as the contract needs it. */
export interface ContractClient {
  /** Attach; resolves once the context has reported onConnection(true). */
  connect(): Promise<void>;
  /** Go away; resolves once the context has reported onConnection(false). */
  disconnect(): Promise<void>;
  /** VFIO_USER_REGION_READ (a count) or _WRITE (a Buffer). */
  access(index: number, offset: number, dataOrCount: Buffer | number): Promise<ClientReply>;
  /** VFIO_USER_DEVICE_RESET. */
  reset(): Promise<void>;
  /** VFIO_USER_DEVICE_SET_IRQS, ACTION_MASK or _UNMASK with DATA_NONE. */
  setIrqState(type: IrqType, start: number, count: number, masked: boolean): Promise<void>;
  /** VFIO_USER_DMA_MAP without an fd. */
  dmaMap(iova: bigint, length: number): Promise<void>;
  dmaUnmap(iova: bigint, length: number): Promise<void>;
  /** Another client tries to attach; resolves with the errno its VERSION got. */
  second(): Promise<number>;
  // A client that passes fds (ContractSubject.passesFds) also has:
  /** VFIO_USER_DEVICE_SET_IRQS, ACTION_TRIGGER with a new eventfd for `vector` of `type`. */
  giveEventfd?(type: IrqType, vector: number): Promise<void>;
  /** How often that eventfd was written since the last call. */
  eventfdCount?(type: IrqType, vector: number): Promise<number>;
  /** VFIO_USER_DMA_MAP with an fd over memory of the client's holding `data`. */
  dmaMapMemory?(iova: bigint, data: Uint8Array): Promise<void>;
  /** What the client's memory of DMA region `iova` holds at `offset`. */
  dmaPeek?(iova: bigint, offset: number, len: number): Promise<Buffer>;
  /** Drop whatever the client still holds (after a failed test). */
  kill(): void;
}

export interface ContractSubject {
  binding: Binding;
  /** A fresh socket path for a context. */
  socketPath(): string;
  /** Whether its clients pass fds (giveEventfd, dmaMapMemory). */
  passesFds: boolean;
  /** A client for `ctx` (created with `options`). */
  client(ctx: NativeContext, options: ContextOptions): ContractClient;
}

/** Every callback the context made, in order, and the log lines. */
class Recorder {
  events: unknown[][] = [];
  logs: { level: number; message: string }[] = [];
  maps: DmaRegionInfo[] = [];
  polls = 0;

  callbacks(ctx: () => NativeContext, overrides: Partial<ContextCallbacks> = {}): ContextCallbacks {
    const ev = (...e: unknown[]) => this.events.push(e);
    return quietCallbacks({
      onAccess: (index, offset, len, isWrite) => {
        ev('access', index, offset, len, isWrite);
        if (!isWrite) for (let i = 0; i < len; i++) ctx().scratch[i] = (offset + i) & 0xff;
      },
      onDmaMap: (info) => {
        this.maps.push(info);
        ev('map', info.iova, info.length, info.memory === null ? null : info.memory.byteLength);
      },
      onDmaUnmap: (iova, length) => {
        const m = this.maps.find((x) => x.iova === iova && x.length === length);
        // Still intact when told.
        ev('unmap', iova, length, m?.memory ? m.memory.byteLength : null);
      },
      onReset: (type) => ev('reset', type, ctx().readConfig(0x04, 2)),
      onIrqState: (...a) => ev('irqState', ...a),
      onConnection: (a) => ev('connection', a),
      onLog: (level, message) => this.logs.push({ level, message }),
      onRefused: (reason) => ev('refused', reason),
      onPoll: () => {
        this.polls++;
      },
      ...overrides,
    });
  }

  of(kind: string): unknown[][] {
    return this.events.filter((e) => e[0] === kind);
  }

  kinds(): unknown[] {
    return this.events.map((e) => e[0]).filter((k) => k !== 'access');
  }
}

/** The capability list: id -> offset. */
function capabilities(ctx: NativeContext): Map<number, number> {
  const caps = new Map<number, number>();
  for (let p = ctx.readConfig(0x34, 1); p !== 0; p = ctx.readConfig(p + 1, 1)) caps.set(ctx.readConfig(p, 1), p);
  return caps;
}

export function bindingContract(name: string, subject: () => ContractSubject): void {
  describe(`binding contract: ${name}`, () => {
    const s = subject();

    /** A context with recorded callbacks and a client; closed (and the client dropped) by `done`. */
    async function withContext(
      body: (t: { ctx: NativeContext; rec: Recorder; client: ContractClient; options: ContextOptions }) => Promise<void>,
      opts: { options?: Partial<ContextOptions>; callbacks?: Partial<ContextCallbacks> } = {},
    ): Promise<void> {
      const options = { ...testOptions(s.socketPath()), ...opts.options };
      const rec = new Recorder();
      const ctx: NativeContext = s.binding.createContext(options, rec.callbacks(() => ctx, opts.callbacks));
      const client = s.client(ctx, options);
      try {
        await body({ ctx, rec, client, options });
      } finally {
        client.kill();
        ctx.close();
      }
    }

    describe('createContext', () => {
      it('rejects inconsistent options and missing callbacks', () => {
        const o = testOptions(s.socketPath());
        const bad = (patch: Partial<ContextOptions>, cbs: ContextCallbacks = quietCallbacks()) => () =>
          s.binding.createContext({ ...o, ...patch }, cbs);
        expect(bad({ regions: [...o.regions, { kind: 'trapped', index: 1, size: 4096 }] })).toThrow(/upper half/);
        expect(bad({ regions: [{ kind: 'trapped', index: 0, size: 3000 }] })).toThrow(/power of two/);
        expect(bad({ regions: [{ kind: 'memfd', index: 0, size: 2048, name: 'x' }] })).toThrow(/at least one page/);
        expect(bad({ regions: [{ kind: 'trapped', index: 4, size: 64 }, { kind: 'trapped', index: 4, size: 64 }] })).toThrow(/declared twice/);
        expect(bad({ barFlags: [{ index: 5, is64: true, prefetchable: false }] })).toThrow(/BAR5 cannot be 64-bit/);
        expect(bad({ msix: { vectors: 0, bar: 2 } })).toThrow(RangeError);
        expect(bad({ msix: { vectors: 16, bar: 4 }, regions: [{ kind: 'trapped', index: 4, size: 4096 }] })).toThrow(/table and PBA need/);
        expect(bad({}, { ...quietCallbacks(), onAccess: undefined } as unknown as ContextCallbacks)).toThrow(/callbacks\.onAccess/);
      });

      it('sets up config space: identity, BAR memory types, MSI-X and PCIe capabilities', async () => {
        await withContext(async ({ ctx }) => {
          expect(ctx.readConfig(0, 4)).toBe(0x22508086);
          expect(ctx.readConfig(0x2c, 4)).toBe(0x25008086);
          expect(ctx.readConfig(8, 4)).toBe(0x0b400011); // class code, revision
          expect(ctx.readConfig(0x3d, 1)).toBe(1);
          // BAR0: memory, 64-bit (type 10b), prefetchable; BAR1 its upper half.
          expect(ctx.readConfig(0x10, 4)).toBe(0xc);
          expect(ctx.readConfig(0x14, 4)).toBe(0);
          expect(ctx.readConfig(0x18, 4)).toBe(0); // BAR2: 32-bit memory (MSI-X)
          expect(ctx.readConfig(0x20, 4)).toBe(0x4); // BAR4: 64-bit, not prefetchable
          const caps = capabilities(ctx);
          const msix = caps.get(0x11)!;
          expect(msix).toBeDefined();
          expect(ctx.readConfig(msix + 2, 2)).toBe(15); // 16 vectors, disabled
          expect(ctx.readConfig(msix + 4, 4)).toBe(2); // table: BAR2 + 0
          expect(ctx.readConfig(msix + 8, 4)).toBe(0x1000 | 2); // PBA: BAR2 + 0x1000
          const px = caps.get(0x10)!;
          expect(px).toBeDefined();
          expect(ctx.readConfig(px + 2, 2)).toBe(0x0002); // v2, endpoint
          expect(ctx.readConfig(4092, 4)).toBe(0); // PCIe: 4 KiB of config space
          expect(() => ctx.readConfig(4093, 4)).toThrow(RangeError);
          expect(() => ctx.readConfig(0, 5)).toThrow(RangeError);
        });
        await withContext(
          async ({ ctx }) => {
            expect(capabilities(ctx).has(0x10)).toBe(false);
            expect(() => ctx.readConfig(256, 1)).toThrow(RangeError);
          },
          { options: { pcie: false } },
        );
      });

      it('gives memfd BARs one shared Buffer and refuses other regions', async () => {
        await withContext(async ({ ctx }) => {
          expect(ctx.scratch.length).toBe(4096);
          const mem = ctx.regionMemory(0);
          expect(mem.length).toBe(MIB);
          expect(ctx.regionMemory(0)).toBe(mem);
          expect(typeof ctx.regionFd(0)).toBe('number');
          expect(() => ctx.regionMemory(4)).toThrow(/not memfd-backed/);
          expect(() => ctx.regionFd(4)).toThrow(/not memfd-backed/);
          expect(() => ctx.regionMemory(2)).toThrow(/not memfd-backed/);
        });
      });

      it('has no client yet: not attached, no IRQ type, trigger false; bad requests throw', async () => {
        await withContext(async ({ ctx, rec }) => {
          expect(ctx.attached()).toBe(false);
          expect(ctx.activeIrqType()).toBe(-1);
          expect(ctx.trigger(IRQ_TYPE.MSIX, 0)).toBe(false);
          expect(ctx.trigger(IRQ_TYPE.INTX, 0)).toBe(false);
          expect(() => ctx.trigger(IRQ_TYPE.MSIX, 16)).toThrow(RangeError);
          expect(() => ctx.trigger(IRQ_TYPE.MSIX, -1)).toThrow(RangeError);
          expect(() => ctx.trigger(IRQ_TYPE.INTX, 1)).toThrow(RangeError);
          expect(() => ctx.trigger(IRQ_TYPE.MSI, 0)).toThrow(RangeError);
          ctx.setLogLevel(7);
          ctx.setLogLevel(3);
          expect(() => ctx.setLogLevel(8)).toThrow(RangeError);
          expect(() => ctx.setLogLevel(-1)).toThrow(RangeError);
          expect(rec.events).toEqual([]);
        });
        await withContext(
          async ({ ctx }) => {
            expect(() => ctx.trigger(IRQ_TYPE.INTX, 0)).toThrow(/INTx is not offered/);
          },
          { options: { intx: false } },
        );
      });
    });

    describe('a client', () => {
      it('attaches and detaches: onConnection, attached(), INTx until MSI-X is enabled', async () => {
        await withContext(async ({ ctx, rec, client }) => {
          await client.connect();
          expect(rec.of('connection')).toEqual([['connection', true]]);
          expect(ctx.attached()).toBe(true);
          expect(ctx.activeIrqType()).toBe(IRQ_TYPE.INTX);
          await client.disconnect();
          expect(rec.of('connection')).toEqual([['connection', true], ['connection', false]]);
          expect(ctx.attached()).toBe(false);
          expect(ctx.activeIrqType()).toBe(-1);
          expect(ctx.trigger(IRQ_TYPE.INTX, 0)).toBe(false);
        });
      });

      it('enables MSI-X through config space: the active type follows, the other type is not raised', async () => {
        await withContext(async ({ ctx, client }) => {
          const msix = capabilities(ctx).get(0x11)!;
          await client.connect();
          const ctrl = Buffer.alloc(2);
          ctrl.writeUInt16LE(0x8000);
          expect((await client.access(REGION.CONFIG, msix + 2, ctrl)).error).toBe(0);
          expect(ctx.readConfig(msix + 2, 2)).toBe(0x8000 | 15);
          expect((await client.access(REGION.CONFIG, msix + 2, 2)).data.readUInt16LE(0)).toBe(0x8000 | 15);
          expect(ctx.activeIrqType()).toBe(IRQ_TYPE.MSIX);
          expect(ctx.trigger(IRQ_TYPE.INTX, 0)).toBe(false); // not the active type
          expect(ctx.trigger(IRQ_TYPE.MSIX, 3)).toBe(false); // no eventfd handed over
          ctrl.writeUInt16LE(0);
          await client.access(REGION.CONFIG, msix + 2, ctrl);
          expect(ctx.activeIrqType()).toBe(IRQ_TYPE.INTX);
        });
        await withContext(
          async ({ ctx, client }) => {
            await client.connect();
            expect(ctx.activeIrqType()).toBe(-1); // no INTx offered, MSI-X off
          },
          { options: { intx: false } },
        );
      });

      it('reads config space and memfd BARs without calling onAccess', async () => {
        await withContext(async ({ ctx, rec, client }) => {
          await client.connect();
          expect((await client.access(REGION.CONFIG, 0, 4)).data.readUInt32LE(0)).toBe(0x22508086);
          ctx.regionMemory(0).write('hello, vfio-user', 0x800);
          expect((await client.access(0, 0x800, 16)).data.toString()).toBe('hello, vfio-user');
          expect((await client.access(0, 0x900, Buffer.from('from the client'))).error).toBe(0);
          expect(ctx.regionMemory(0).toString('utf8', 0x900, 0x90f)).toBe('from the client');
          expect(rec.of('access')).toEqual([]);
        });
      });

      it('serves trapped BARs through onAccess in scratch-sized chunks', async () => {
        await withContext(async ({ rec, client }) => {
          await client.connect();
          const read = await client.access(4, 0x100, 8192);
          expect(read.error).toBe(0);
          expect(read.data.length).toBe(8192);
          expect([...read.data.subarray(0, 4)]).toEqual([0x00, 0x01, 0x02, 0x03]);
          expect(read.data[8191]).toBe((0x100 + 8191) & 0xff);
          expect(rec.of('access')).toEqual([
            ['access', 4, 0x100, 4096, false],
            ['access', 4, 0x1100, 4096, false],
          ]);
          rec.events.length = 0;
          const payload = Buffer.from(Array.from({ length: 5000 }, (_, i) => (i * 7) & 0xff));
          expect((await client.access(4, 0x2000, payload)).error).toBe(0);
          expect(rec.of('access')).toEqual([
            ['access', 4, 0x2000, 4096, true],
            ['access', 4, 0x3000, 904, true],
          ]);
          // The MSI-X BAR, not listed in regions, is a trapped 8 KiB BAR.
          rec.events.length = 0;
          expect((await client.access(2, 0x1000, 8)).error).toBe(0);
          expect(rec.of('access')).toEqual([['access', 2, 0x1000, 8, false]]);
        });
      });

      it('hands a write its data in scratch', async () => {
        const seen: Buffer[] = [];
        let ctxRef: NativeContext | undefined;
        await withContext(
          async ({ ctx, client }) => {
            ctxRef = ctx;
            await client.connect();
            const payload = Buffer.from(Array.from({ length: 5000 }, (_, i) => (i * 7) & 0xff));
            expect((await client.access(4, 0x2000, payload)).error).toBe(0);
            expect(Buffer.concat(seen).equals(payload)).toBe(true);
          },
          {
            callbacks: {
              onAccess: (_i, _o, len, isWrite) => {
                if (isWrite) seen.push(Buffer.from(ctxRef!.scratch.subarray(0, len)));
              },
            },
          },
        );
      });

      it('fails an access whose onAccess throws with EIO, and reports it', async () => {
        await withContext(
          async ({ rec, client }) => {
            await client.connect();
            const failed = await client.access(4, 0x40, 4);
            expect(failed.error).toBe(EIO);
            expect(
              rec.logs.some(
                (l) => l.level === LOG_ERR && /^vphi: onAccess\(region 4, offset 0x40, 4 bytes, read\) threw: Error: no such register/.test(l.message),
              ),
            ).toBe(true);
            expect((await client.access(4, 0x44, 4)).error).toBe(0); // the next one is served
          },
          {
            callbacks: {
              onAccess: (_i, offset) => {
                if (offset === 0x40) throw new Error('no such register');
              },
            },
          },
        );
      });

      it('reports a throwing callback and carries on', async () => {
        await withContext(
          async ({ ctx, rec, client }) => {
            await client.connect();
            expect(ctx.attached()).toBe(true);
            expect(rec.logs.some((l) => l.level === LOG_ERR && /^vphi: onConnection threw: Error: boom/.test(l.message))).toBe(true);
            await client.reset();
            expect(rec.logs.some((l) => l.level === LOG_ERR && /^vphi: onReset threw: Error: boom/.test(l.message))).toBe(true);
            expect(ctx.attached()).toBe(true);
          },
          {
            callbacks: {
              onConnection: () => {
                throw new Error('boom');
              },
              onReset: () => {
                throw new Error('boom');
              },
            },
          },
        );
      });

      it('resets the device on request: config space back as created, onReset(DEVICE), still attached', async () => {
        await withContext(async ({ ctx, rec, client }) => {
          const msix = capabilities(ctx).get(0x11)!;
          await client.connect();
          await client.access(REGION.CONFIG, msix + 2, Buffer.from([0, 0x80]));
          await client.access(REGION.CONFIG, 0x04, Buffer.from([0x06, 0]));
          expect(ctx.readConfig(0x04, 2)).toBe(0x06);
          expect(ctx.activeIrqType()).toBe(IRQ_TYPE.MSIX);
          await client.reset();
          // Already back when onReset ran (the recorder reads the command register then).
          expect(rec.of('reset')).toEqual([['reset', RESET_TYPE.DEVICE, 0]]);
          expect(ctx.readConfig(msix + 2, 2)).toBe(15);
          expect(ctx.activeIrqType()).toBe(IRQ_TYPE.INTX);
          expect(ctx.attached()).toBe(true);
        });
      });

      it('reports mask changes of MSI-X vectors and INTx through onIrqState', async () => {
        await withContext(async ({ rec, client }) => {
          await client.connect();
          await client.setIrqState(IRQ_TYPE.MSIX, 2, 3, true);
          await client.setIrqState(IRQ_TYPE.MSIX, 3, 1, false);
          await client.setIrqState(IRQ_TYPE.INTX, 0, 1, true);
          expect(rec.of('irqState')).toEqual([
            ['irqState', IRQ_TYPE.MSIX, 2, 3, true],
            ['irqState', IRQ_TYPE.MSIX, 3, 1, false],
            ['irqState', IRQ_TYPE.INTX, 0, 1, true],
          ]);
        });
      });

      it('maps and unmaps DMA regions without an fd: memory null, no word about it', async () => {
        await withContext(async ({ rec, client }) => {
          await client.connect();
          await client.dmaMap(0xc0000n, 0x40000);
          await client.dmaMap(0xc0000n, 0x40000); // an identical re-map is not reported again
          expect(rec.of('map')).toEqual([['map', 0xc0000n, 0x40000, null]]);
          expect(rec.maps[0].prot).toBe(3);
          await client.dmaUnmap(0xc0000n, 0x40000);
          expect(rec.of('unmap')).toEqual([['unmap', 0xc0000n, 0x40000, null]]);
          expect(rec.logs.filter((l) => l.level <= 4)).toEqual([]);
        });
      });

      it('takes more DMA regions than libvfio-user\'s table holds: every BAR of 8 cards without an fd, then guest RAM', async () => {
        await withContext(async ({ rec, client }) => {
          await client.connect();
          const bar = (k: number) => 0x80_0000_0000n + BigInt(k) * 0x4_0000_0000n;
          for (let k = 0; k < 24; k++) await client.dmaMap(bar(k), 0x2000_0000);
          if (s.passesFds) await client.dmaMapMemory!(0x10000n, new Uint8Array(0x10000).fill(7));
          expect(rec.of('map').length).toBe(s.passesFds ? 25 : 24);
          if (s.passesFds) expect(new Uint8Array(rec.maps[24].memory!)[0x1234]).toBe(7);
          for (let k = 0; k < 24; k++) await client.dmaUnmap(bar(k), 0x2000_0000);
          expect(rec.of('unmap').map((e) => e[1])).toEqual([...Array(24).keys()].map(bar));
        });
      });

      it('going away: every onDmaUnmap, then onReset(LOST_CONN) with config space reset, then onConnection(false)', async () => {
        await withContext(async ({ ctx, rec, client }) => {
          const msix = capabilities(ctx).get(0x11)!;
          await client.connect();
          await client.access(REGION.CONFIG, 0x04, Buffer.from([0x06, 0]));
          await client.access(REGION.CONFIG, msix + 2, Buffer.from([0, 0x80]));
          await client.dmaMap(0x100000n, 0x100000);
          await client.dmaMap(0x300000n, 0x100000);
          rec.events.length = 0;
          await client.disconnect();
          expect(rec.kinds()).toEqual(['unmap', 'unmap', 'reset', 'connection']);
          expect(rec.of('unmap').map((e) => e[1]).sort()).toEqual([0x100000n, 0x300000n]);
          expect(rec.of('reset')).toEqual([['reset', RESET_TYPE.LOST_CONN, 0]]);
          expect(ctx.readConfig(msix + 2, 2)).toBe(15);
        });
      });

      it('the next client finds config space as created and the memfd BARs as left', async () => {
        await withContext(async ({ ctx, client }) => {
          const msix = capabilities(ctx).get(0x11)!;
          await client.connect();
          await client.access(REGION.CONFIG, msix + 2, Buffer.from([0, 0x80]));
          await client.access(0, 0x10, Buffer.from('kept'));
          await client.disconnect();
          await client.connect();
          expect(ctx.activeIrqType()).toBe(IRQ_TYPE.INTX);
          expect((await client.access(REGION.CONFIG, msix + 2, 2)).data.readUInt16LE(0)).toBe(15);
          expect((await client.access(0, 0x10, 4)).data.toString()).toBe('kept');
        });
      });

      it('a second client is refused with EBUSY while one is attached', async () => {
        await withContext(async ({ ctx, rec, client, options }) => {
          await client.connect();
          expect(await client.second()).toBe(EBUSY);
          await until(() => rec.of('refused').length === 1);
          expect(rec.of('refused')).toEqual([['refused', `a client is already attached to ${options.socketPath}`]]);
          expect(rec.of('connection')).toEqual([['connection', true]]);
          expect(ctx.attached()).toBe(true);
          expect((await client.access(REGION.CONFIG, 0, 2)).data.readUInt16LE(0)).toBe(0x8086);
        });
      });

      /** A DirectReads table for the 128 KiB BAR4 with `regs` (dword index → value) as its slots. */
      function table(regs: [number, number][], threshold = 0): DirectReads {
        const slot = new Int32Array(32 * 1024).fill(-1);
        regs.forEach(([d], i) => (slot[d] = i));
        return {
          slot,
          value: Uint32Array.from(regs.map(([, v]) => v)),
          spinValue: new Uint32Array(regs.length),
          spinReads: new Uint32Array(regs.length),
          spinThreshold: Uint32Array.of(threshold),
        };
      }

      it('serves aligned dword reads from directReads() without onAccess or onPoll; everything else through onAccess', async () => {
        await withContext(async ({ ctx, rec, client }) => {
          await client.connect();
          const t = table([[0x40, 0x11111111], [0x41, 0x22222222], [0x50, 0xcafe0001]]);
          ctx.directReads(4, t);
          const before = rec.polls;
          rec.events.length = 0;
          const r = await client.access(4, 0x100, 8);
          expect([r.error, r.data.readUInt32LE(0), r.data.readUInt32LE(4)]).toEqual([0, 0x11111111, 0x22222222]);
          // The table is read at each access: a change shows at once.
          t.value[0] = 0x33333333;
          expect((await client.access(4, 0x100, 4)).data.readUInt32LE(0)).toBe(0x33333333);
          for (let i = 0; i < 20; i++) expect((await client.access(4, 0x140, 4)).data.readUInt32LE(0)).toBe(0xcafe0001);
          expect(rec.events).toEqual([]);
          // Not whole aligned dwords, a dword without a slot, a write, another region: onAccess.
          await client.access(4, 0x102, 2);
          await client.access(4, 0x100, 12);
          await client.access(4, 0x100, Buffer.alloc(4));
          await client.access(2, 0, 4);
          expect(rec.of('access')).toEqual([
            ['access', 4, 0x102, 2, false],
            ['access', 4, 0x100, 12, false],
            ['access', 4, 0x100, 4, true],
            ['access', 2, 0, 4, false],
          ]);
          // 22 direct reads and 4 that reached onAccess, then one through libvfio-user: onPoll only for those.
          await client.access(REGION.CONFIG, 0, 4);
          await until(() => rec.polls >= before + 5);
          expect(rec.polls - before).toBeLessThanOrEqual(6);
          // null: onAccess again.
          ctx.directReads(4, null);
          rec.events.length = 0;
          await client.access(4, 0x100, 4);
          expect(rec.of('access')).toEqual([['access', 4, 0x100, 4, false]]);
        });
      });

      it('directReads() keeps the spin counts and leaves the read that reaches the threshold to onAccess', async () => {
        await withContext(async ({ ctx, rec, client }) => {
          await client.connect();
          const t = table([[0x40, 7]], 3);
          ctx.directReads(4, t);
          rec.events.length = 0;
          await client.access(4, 0x100, 4);
          await client.access(4, 0x100, 4);
          expect([rec.of('access').length, t.spinValue[0], t.spinReads[0]]).toEqual([0, 7, 2]);
          await client.access(4, 0x100, 4); // the third read of an unchanged value: the register file's to warn about
          expect(rec.of('access')).toEqual([['access', 4, 0x100, 4, false]]);
          expect(t.spinReads[0]).toBe(2);
          // A change of value starts the count again.
          t.value[0] = 8;
          await client.access(4, 0x100, 4);
          expect([rec.of('access').length, t.spinValue[0], t.spinReads[0]]).toEqual([1, 8, 1]);
          // Threshold 0: no counting, every read direct.
          t.spinThreshold[0] = 0;
          for (let i = 0; i < 5; i++) await client.access(4, 0x100, 4);
          expect([rec.of('access').length, t.spinReads[0]]).toEqual([1, 1]);
        });
      });

      it('directReads() refuses a region that is not trapped and a table that does not fit', async () => {
        await withContext(async ({ ctx }) => {
          expect(() => ctx.directReads(0, table([]))).toThrow(RangeError);
          expect(() => ctx.directReads(7, table([]))).toThrow(RangeError);
          expect(() => ctx.directReads(4, { ...table([]), slot: new Int32Array(16) })).toThrow(RangeError);
          const past = table([[0x40, 1]]);
          past.slot[3] = 1;
          expect(() => ctx.directReads(4, past)).toThrow(RangeError);
          expect(() => ctx.directReads(4, { ...table([[0x40, 1]]), spinReads: new Uint32Array(0) })).toThrow(RangeError);
          expect(() => ctx.directReads(4, { ...table([]), value: new Int32Array(1) as unknown as Uint32Array })).toThrow(TypeError);
          expect(() => ctx.directReads(2, table([]))).not.toThrow(); // the unlisted MSI-X BAR is trapped too
        });
      });

      it('calls onPoll after a batch of requests', async () => {
        await withContext(async ({ rec, client }) => {
          await client.connect();
          const before = rec.polls;
          await client.access(REGION.CONFIG, 0, 4);
          await until(() => rec.polls > before);
        });
      });
    });

    describe('close()', () => {
      it('with a client: onDmaUnmap for each region, onConnection(false), no onReset; idempotent', async () => {
        await withContext(async ({ ctx, rec, client }) => {
          await client.connect();
          await client.dmaMap(0x100000n, 0x100000);
          const mem = ctx.regionMemory(0);
          rec.events.length = 0;
          ctx.close();
          expect(rec.kinds()).toEqual(['unmap', 'connection']);
          expect(rec.of('connection')).toEqual([['connection', false]]);
          ctx.close();
          expect(rec.kinds()).toEqual(['unmap', 'connection']);
          expect(mem.length).toBe(0); // detached, never a view on unmapped memory
          expect(ctx.attached()).toBe(false);
          expect(ctx.activeIrqType()).toBe(-1);
          expect(ctx.trigger(IRQ_TYPE.MSIX, 0)).toBe(false);
          expect(() => ctx.trigger(IRQ_TYPE.MSIX, 16)).toThrow(RangeError);
          expect(() => ctx.regionMemory(0)).toThrow();
          expect(() => ctx.readConfig(0, 4)).toThrow();
        });
      });

      it('without a client: no callbacks', async () => {
        await withContext(async ({ ctx, rec }) => {
          ctx.close();
          expect(rec.events).toEqual([]);
        });
      });
    });

    describe.runIf(s.passesFds)('with a client that passes fds', () => {
      it('trigger writes the eventfd of the active type', async () => {
        await withContext(async ({ ctx, client }) => {
          const msix = capabilities(ctx).get(0x11)!;
          await client.connect();
          expect(ctx.trigger(IRQ_TYPE.INTX, 0)).toBe(false); // INTx active, no eventfd yet
          await client.giveEventfd!(IRQ_TYPE.INTX, 0);
          expect(ctx.trigger(IRQ_TYPE.INTX, 0)).toBe(true);
          expect(await client.eventfdCount!(IRQ_TYPE.INTX, 0)).toBe(1);
          await client.access(REGION.CONFIG, msix + 2, Buffer.from([0, 0x80]));
          await client.giveEventfd!(IRQ_TYPE.MSIX, 5);
          expect(ctx.trigger(IRQ_TYPE.MSIX, 5)).toBe(true);
          expect(ctx.trigger(IRQ_TYPE.MSIX, 5)).toBe(true);
          expect(ctx.trigger(IRQ_TYPE.MSIX, 6)).toBe(false);
          expect(ctx.trigger(IRQ_TYPE.INTX, 0)).toBe(false); // not the active type
          expect(await client.eventfdCount!(IRQ_TYPE.MSIX, 5)).toBe(2);
          expect(await client.eventfdCount!(IRQ_TYPE.INTX, 0)).toBe(0);
          await client.disconnect();
          await client.connect();
          await client.access(REGION.CONFIG, msix + 2, Buffer.from([0, 0x80]));
          expect(ctx.trigger(IRQ_TYPE.MSIX, 5)).toBe(false); // eventfds went with the client
        });
      });

      it('dropResidentPages() leaves DMA memory and the memfd BARs as they were, and covers both', async () => {
        let ctxRef: NativeContext | undefined;
        await withContext(async ({ ctx, rec, client }) => {
          ctxRef = ctx;
          await client.connect();
          const data = new Uint8Array(0x10000).map((_, i) => (i * 13) & 0xff);
          await client.dmaMapMemory!(0x10000n, data);
          const view = new Uint8Array(rec.maps[0].memory!);
          view.set([9, 8, 7], 0x200); // the card wrote guest RAM
          const bar0 = ctx.regionMemory(0);
          bar0.fill(0xa5, 0, 0x3000);
          expect(ctx.dropResidentPages()).toBe(MIB + 0x10000);
          expect([...view.subarray(0x200, 0x203)]).toEqual([9, 8, 7]);
          expect(view[0x1001]).toBe((0x1001 * 13) & 0xff);
          expect([...(await client.dmaPeek!(0x10000n, 0x200, 3))]).toEqual([9, 8, 7]);
          expect(bar0.subarray(0, 0x3000).every((b) => b === 0xa5)).toBe(true);
          expect(bar0[0x3000]).toBe(0);
          bar0[0x10] = 1; // and it is still writable
          expect(ctx.regionMemory(0)[0x10]).toBe(1);
        });
        expect(() => ctxRef!.dropResidentPages()).toThrow(/closed/);
      });

      it("DMA memory is the client's, intact at onDmaUnmap and detached after", async () => {
        await withContext(async ({ rec, client }) => {
          await client.connect();
          const data = new Uint8Array(0x10000);
          data[5] = 0x5a;
          await client.dmaMapMemory!(0x10000n, data);
          expect(rec.of('map')).toEqual([['map', 0x10000n, 0x10000, 0x10000]]);
          const info = rec.maps[0];
          const view = new Uint8Array(info.memory!);
          expect(view[5]).toBe(0x5a);
          view.set([1, 2, 3, 4], 0x100); // the card writes guest RAM
          expect([...(await client.dmaPeek!(0x10000n, 0x100, 4))]).toEqual([1, 2, 3, 4]);
          await client.dmaUnmap(0x10000n, 0x10000);
          expect(rec.of('unmap')).toEqual([['unmap', 0x10000n, 0x10000, 0x10000]]);
          expect(info.memory!.byteLength).toBe(0);
          expect(view.length).toBe(0);
        });
      });
    });
  });
}
