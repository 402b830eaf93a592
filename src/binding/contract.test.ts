/**
 * The binding contract (contract.ts) against the mock and, when the addon
 * is built, the native binding with a raw vfio-user client on its socket.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { afterAll, describe } from 'vitest';

import { type ContractClient, bindingContract } from './contract.ts';
import { MockBinding, type MockContext } from './mock.ts';
import { loadNativeBinding, nativeAvailable, nativeLoadError } from './native.ts';
import { RawClient, VFIO_IRQ_SET_ACTION_MASK, VFIO_IRQ_SET_ACTION_UNMASK, VFIO_IRQ_SET_DATA_NONE, until } from './raw-client.ts';
import type { NativeContext } from './types.ts';

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
      giveEventfd: async (index) => m.giveEventfd(index),
      dmaMapMemory: async (iova, memory) => m.dmaMap(iova, memory),
      kill() {},
    };
  },
}));

const skip = nativeAvailable() ? undefined : nativeLoadError();
if (skip) {
  describe.skip(`binding contract: native (skipped: ${skip})`, () => {});
} else {
  bindingContract('native', () => ({
    binding: loadNativeBinding(),
    socketPath,
    // The raw client speaks over a child's net.Socket, which cannot pass fds:
    // eventfds and fd-backed DMA are covered by native.test.ts with QEMU.
    passesFds: false,
    client(ctx: NativeContext, options): ContractClient {
      let c: RawClient | undefined;
      const clients: RawClient[] = [];
      const raw = () => {
        if (!c) throw new Error('raw client: not connected');
        return c;
      };
      const check = (what: string, r: { error: number }) => {
        if (r.error) throw new Error(`raw client: ${what} failed with errno ${r.error}`);
      };
      return {
        async connect() {
          const { client, version } = await RawClient.connect(options.socketPath);
          clients.push(client);
          check('VERSION', version);
          c = client;
          await until(() => ctx.attached());
        },
        async disconnect() {
          await raw().end();
          c = undefined;
          await until(() => !ctx.attached());
        },
        async access(index, offset, dataOrCount) {
          const r = typeof dataOrCount === 'number' ? await raw().regionRead(index, offset, dataOrCount) : await raw().regionWrite(index, offset, dataOrCount);
          return { error: r.error, data: r.error ? Buffer.alloc(0) : r.data };
        },
        async reset() {
          check('DEVICE_RESET', await raw().reset());
        },
        async setIrqState(type, start, count, masked) {
          const action = masked ? VFIO_IRQ_SET_ACTION_MASK : VFIO_IRQ_SET_ACTION_UNMASK;
          check('SET_IRQS', await raw().setIrqs(action | VFIO_IRQ_SET_DATA_NONE, type, start, count));
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
        kill() {
          for (const x of clients) x.kill();
        },
      };
    },
  }));
}
