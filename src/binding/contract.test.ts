/**
 * The binding contract (contract.ts) against the mock and, when the addon
 * is built, the native binding with a vfio-user client on its socket (in
 * Python when python3 can pass fds, so eventfds and fd-backed DMA are
 * checked too).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { afterAll, describe } from 'vitest';

import { type ContractClient, bindingContract } from './contract.ts';
import { MockBinding, type MockContext } from './mock.ts';
import { loadNativeBinding, nativeAvailable, nativeLoadError } from './native.ts';
import {
  FdClient,
  RawClient,
  VFIO_IRQ_SET_ACTION_MASK,
  VFIO_IRQ_SET_ACTION_UNMASK,
  VFIO_IRQ_SET_DATA_NONE,
  fdClientAvailable,
  until,
} from './raw-client.ts';
import { IRQ_TYPE, type NativeContext } from './types.ts';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vphi-contract-'));
let n = 0;
const socketPath = () => path.join(dir, `s${n++}`, 'vphi.sock');
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

bindingContract('mock', () => ({
  binding: new MockBinding(),
  socketPath,
  passesFds: true,
  client(ctx: NativeContext): ContractClient {
    const m = ctx as MockContext;
    const memories = new Map<bigint, ArrayBuffer>();
    let seen = 0;
    return {
      connect: async () => m.connect(),
      disconnect: async () => m.disconnect(),
      access: async (index, offset, dataOrCount) => m.access(index, offset, dataOrCount),
      reset: async () => m.reset(),
      setIrqState: async (type, start, count, masked) => m.setIrqState(type, start, count, masked),
      dmaMap: async (iova, length) => m.dmaMap(iova, null, length),
      dmaUnmap: async (iova, length) => {
        m.dmaUnmap(iova, length);
      },
      second: async () => m.refuseSecond(),
      // One eventfd array for every type (libvfio-user's irqs->efds).
      giveEventfd: async (_type, vector) => m.giveEventfd(vector),
      async eventfdCount(type, vector) {
        const fresh = m.triggered.slice(seen);
        seen = m.triggered.length;
        return fresh.filter(([t, v]) => t === type && v === vector).length;
      },
      async dmaMapMemory(iova, data) {
        const ab = new ArrayBuffer(data.length);
        new Uint8Array(ab).set(data);
        memories.set(iova, ab);
        m.dmaMap(iova, ab);
      },
      dmaPeek: async (iova, offset, len) => Buffer.from(new Uint8Array(memories.get(iova)!, offset, len)),
      kill() {},
    };
  },
}));

const skip = nativeAvailable() ? undefined : nativeLoadError();
const fds = !skip && fdClientAvailable();
if (skip) {
  describe.skip(`binding contract: native (skipped: ${skip})`, () => {});
} else {
  bindingContract(`native${fds ? '' : ' (python3 cannot pass fds: eventfds and fd-backed DMA are left to native.test.ts)'}`, () => ({
    binding: loadNativeBinding(),
    socketPath,
    passesFds: fds,
    client(ctx: NativeContext, options): ContractClient {
      let c: FdClient | RawClient | undefined;
      const clients: (FdClient | RawClient)[] = [];
      const raw = () => {
        if (!c) throw new Error('client: not connected');
        return c;
      };
      const fd = () => {
        const x = raw();
        if (!(x instanceof FdClient)) throw new Error('client: this one cannot pass fds');
        return x;
      };
      const check = (what: string, r: { error: number } | number) => {
        const error = typeof r === 'number' ? r : r.error;
        if (error) throw new Error(`client: ${what} failed with errno ${error}`);
      };
      // VFIO_PCI_*_IRQ_INDEX are libvfio-user's IRQ types.
      const irqIndex = (type: number) => (type === IRQ_TYPE.MSIX ? 2 : 0);
      return {
        async connect() {
          if (fds) {
            const { client, error } = await FdClient.connect(options.socketPath);
            clients.push(client);
            check('VERSION', error);
            c = client;
          } else {
            const { client, version } = await RawClient.connect(options.socketPath);
            clients.push(client);
            check('VERSION', version);
            c = client;
          }
          await until(() => ctx.attached());
        },
        async disconnect() {
          await raw().end();
          c = undefined;
          await until(() => !ctx.attached());
        },
        async access(index, offset, dataOrCount) {
          const r =
            typeof dataOrCount === 'number'
              ? await raw().regionRead(index, offset, dataOrCount)
              : await raw().regionWrite(index, offset, dataOrCount);
          return { error: r.error, data: r.error ? Buffer.alloc(0) : r.data };
        },
        async reset() {
          check('DEVICE_RESET', await raw().reset());
        },
        async setIrqState(type, start, count, masked) {
          const action = masked ? VFIO_IRQ_SET_ACTION_MASK : VFIO_IRQ_SET_ACTION_UNMASK;
          check('SET_IRQS', await raw().setIrqs(action | VFIO_IRQ_SET_DATA_NONE, irqIndex(type), start, count));
        },
        async dmaMap(iova, length) {
          check('DMA_MAP', await raw().dmaMap(iova, length));
        },
        async dmaUnmap(iova, length) {
          check('DMA_UNMAP', await raw().dmaUnmap(iova, length));
        },
        async second() {
          const { client, version } = await RawClient.connect(options.socketPath);
          client.kill();
          return version.error;
        },
        async giveEventfd(type, vector) {
          check('SET_IRQS', await fd().giveEventfd(irqIndex(type), vector));
        },
        eventfdCount: (type, vector) => fd().eventfdCount(irqIndex(type), vector),
        async dmaMapMemory(iova, data) {
          check('DMA_MAP', await fd().dmaMapMemory(iova, data));
        },
        dmaPeek: (iova, offset, len) => fd().peek(iova, offset, len),
        kill() {
          for (const x of clients) x.kill();
        },
      };
    },
  }));
}
