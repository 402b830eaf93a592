import { describe, expect, it } from 'vitest';
import type { ScifEndpoint } from '../scif/api.ts';
import { crc32, pattern } from '../../../src/pattern.ts';
import { SINK_PORT, SinkService } from './sink.ts';
import { SOURCE_PORT, SourceService } from './source.ts';
import { recvExact, sendAll } from './stream.ts';
import { FakeScifFabric } from './testing.ts';

async function dial(f: FakeScifFabric, port: number): Promise<ScifEndpoint> {
  const ep = f.api(0).open();
  await ep.connect({ node: 1, port });
  return ep;
}

const u64 = (n: number | bigint) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return b;
};
const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
};
const readU32 = (b: Uint8Array) => Buffer.from(b).readUInt32LE(0);

describe('sink service (port 2001)', () => {
  it('answers each length-prefixed message with its CRC32, repeatedly', async () => {
    const f = new FakeScifFabric();
    const sink = new SinkService();
    sink.start(f.api(1));
    const ep = await dial(f, SINK_PORT);
    for (const n of [8, 0, 1, 100_003]) {
      const data = pattern(n + 1, n);
      await Promise.all([sendAll(ep, Buffer.concat([u64(n), data]))]);
      expect(readU32(await recvExact(ep, 4)).toString(16)).toBe(crc32(data).toString(16));
    }
    await sendAll(ep, Buffer.concat([u64(8), pattern(1, 8)]));
    expect(readU32(await recvExact(ep, 4))).toBe(0xab3b8c88);
    sink.stop();
  });

  it('a partial length, or a message cut short, ends the connection quietly', async () => {
    const f = new FakeScifFabric();
    const sink = new SinkService();
    sink.start(f.api(1));
    const a = await dial(f, SINK_PORT);
    await sendAll(a, u64(1).subarray(0, 5));
    await a.close();
    const b = await dial(f, SINK_PORT);
    await sendAll(b, Buffer.concat([u64(0xffffffffffffffffn), pattern(1, 1000)]));
    await b.close();
    await f.settle();
    expect(sink.endpoints).toBe(1);
    sink.stop();
    await f.settle();
    expect(f.openEndpoints(1)).toBe(0);
  });
});

describe('source service (port 2002)', () => {
  it('replies pattern(seed, N) then its CRC32', async () => {
    const f = new FakeScifFabric();
    const source = new SourceService();
    source.start(f.api(1));
    const ep = await dial(f, SOURCE_PORT);
    await sendAll(ep, Buffer.concat([u64(8), u32(1)]));
    expect(Buffer.from(await recvExact(ep, 12)).toString('hex')).toBe('6c59883cdb85885e' + '888c3bab');
    for (const [n, seed] of [
      [0, 5],
      [3, 0xffffffff],
      [200_001, 77],
    ]) {
      await sendAll(ep, Buffer.concat([u64(n), u32(seed)]));
      const got = await recvExact(ep, n + 4);
      expect(Buffer.from(got.subarray(0, n)).equals(Buffer.from(pattern(seed, n)))).toBe(true);
      expect(readU32(got.subarray(n))).toBe(crc32(pattern(seed, n)));
    }
    source.stop();
  });

  it('a client asking for far too much and leaving ends only that stream', async () => {
    const f = new FakeScifFabric();
    const source = new SourceService();
    source.start(f.api(1));
    const ep = await dial(f, SOURCE_PORT);
    await sendAll(ep, Buffer.concat([u64(1n << 60n), u32(3)]));
    expect(Buffer.from(await recvExact(ep, 100000)).equals(Buffer.from(pattern(3, 100000)))).toBe(true);
    await ep.close();
    await f.settle();
    expect(source.endpoints).toBe(1);
    const again = await dial(f, SOURCE_PORT);
    await sendAll(again, Buffer.concat([u64(4), u32(1)]));
    expect(Buffer.from(await recvExact(again, 4)).toString('hex')).toBe('6c59883c');
    source.stop();
    await f.settle();
    expect(f.openEndpoints(1)).toBe(0);
    expect(f.pending).toBe(0);
  });
});
