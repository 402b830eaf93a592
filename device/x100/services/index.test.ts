import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { memoryTracer } from '../../../src/trace/tracer.ts';
import { ScifError } from '../scif/api.ts';
import { SERVICE_NAMES, cardServices, loadServiceModule } from './index.ts';
import { recvExact, sendAll } from './stream.ts';
import { FakeScifFabric } from './testing.ts';

const names = (l: string) => cardServices(l).map((s) => s.name);

async function refusedOrOk(f: FakeScifFabric, port: number): Promise<string> {
  const ep = f.api(0).open();
  try {
    await ep.connect({ node: 1, port });
    return 'ok';
  } catch (e) {
    return (e as ScifError).code;
  } finally {
    await ep.close();
  }
}

describe('--services LIST', () => {
  it('picks by name; all is the default; none is none', () => {
    expect(SERVICE_NAMES).toEqual(['echo', 'sink', 'source', 'rma']);
    expect(names('all')).toEqual(['echo', 'sink', 'source', 'rma']);
    expect(cardServices().map((s) => s.name)).toEqual(['echo', 'sink', 'source', 'rma']);
    expect(names('')).toEqual(['echo', 'sink', 'source', 'rma']);
    expect(names('rma, Echo,echo')).toEqual(['echo', 'rma']);
    expect(names('none')).toEqual([]);
  });

  it('a bad name is one clear line naming the valid ones', () => {
    expect(() => cardServices('echo,bogus')).toThrow(
      "--services: unknown service 'bogus' (valid: echo, sink, source, rma, peer-rma, all, none)",
    );
    expect(() => cardServices('none,echo')).toThrow(/'none' cannot be combined/);
  });

  it('the card listens on exactly the chosen ports', async () => {
    const f = new FakeScifFabric();
    const all = cardServices('all');
    for (const s of all) s.start(f.api(1));
    for (const p of [2000, 2001, 2002, 2003]) expect(await refusedOrOk(f, p)).toBe('ok');
    expect(await refusedOrOk(f, 2004)).toBe('ECONNREFUSED');
    for (const s of all) s.stop();
    const some = cardServices('sink');
    for (const s of some) s.start(f.api(1));
    expect(await refusedOrOk(f, 2000)).toBe('ECONNREFUSED');
    expect(await refusedOrOk(f, 2001)).toBe('ok');
    for (const s of some) s.stop();
    await f.settle();
    expect(f.openEndpoints(1)).toBe(0);
  });
});

describe('--service FILE', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vphi-service-'));
  const file = (name: string, text: string) => {
    const p = join(dir, name);
    writeFileSync(p, text);
    return p;
  };

  it('runs the README example: a default-export function, stopped with its endpoints', async () => {
    const svc = await loadServiceModule(join(import.meta.dirname, 'examples', 'upper.ts'));
    expect(svc.name).toBe('upper');
    const f = new FakeScifFabric();
    svc.start(f.api(1));
    await f.settle();
    const ep = f.api(0).open();
    await ep.connect({ node: 1, port: 3000 });
    await sendAll(ep, Buffer.from('hello, card'));
    expect(Buffer.from(await recvExact(ep, 11)).toString()).toBe('HELLO, CARD');
    svc.stop();
    await f.settle();
    expect(f.openEndpoints(1)).toBe(0);
    expect(await ep.recv(1, { block: true }).catch((e: Error) => e.message)).toBe('ECONNRESET');
  });

  it('takes a CardService default export as it is', async () => {
    const p = file(
      'svc.mjs',
      `let ep; export default { name: 'mine', start(api) { ep = api.open(); ep.bind(4000); ep.listen(1); }, stop() { ep.close(); } };`,
    );
    const svc = await loadServiceModule(p);
    expect(svc.name).toBe('mine');
    const f = new FakeScifFabric();
    svc.start(f.api(1));
    const c = refusedOrOk(f, 4000);
    let done = false;
    void c.then(() => (done = true));
    await f.settle();
    expect(done).toBe(false); // queued at its listener, which never accepts
    svc.stop();
    expect(await c).toBe('ECONNREFUSED');
  });

  it('a service that throws, sync or async, is traced and never throws into the card', async () => {
    const tracer = memoryTracer();
    const f = new FakeScifFabric();
    const sync = await loadServiceModule(file('sync.mjs', `export default () => { throw new Error('boom'); };`), { tracer });
    const asyn = await loadServiceModule(file('async.mjs', `export default async (api) => { api.open().bind(70000); };`), {
      tracer,
    });
    expect(() => sync.start(f.api(1))).not.toThrow();
    expect(() => asyn.start(f.api(1))).not.toThrow();
    await f.settle();
    expect(tracer.events).toContainEqual(expect.objectContaining({ service: 'sync', error: 'service', err: 'boom' }));
    expect(tracer.events).toContainEqual(expect.objectContaining({ service: 'async', error: 'service' }));
    sync.stop();
    asyn.stop();
    await f.settle();
    expect(f.openEndpoints(1)).toBe(0);
  });

  it('loads TypeScript and CommonJS files too', async () => {
    const ts = await loadServiceModule(file('t.ts', 'export default (api: unknown): void => { void api; };'));
    expect(ts.name).toBe('t');
    const cjs = await loadServiceModule(file('c.cjs', 'module.exports = { default: (api) => { api.open(); } };'));
    const f = new FakeScifFabric();
    cjs.start(f.api(1));
    expect(f.openEndpoints(1)).toBe(1);
    cjs.stop();
    await f.settle();
    expect(f.openEndpoints(1)).toBe(0);
  });

  it('a bad file is one clear error line', async () => {
    await expect(loadServiceModule(join(dir, 'missing.mjs'))).rejects.toThrow(/^--service: no such file: .*missing\.mjs$/);
    await expect(loadServiceModule(file('syntax.mjs', 'export default (;'))).rejects.toThrow(/^--service: cannot load .*syntax\.mjs: /);
    await expect(loadServiceModule(file('num.mjs', 'export default 42;'))).rejects.toThrow(
      /default export must be a function \(api\) => void or a CardService$/,
    );
    await expect(loadServiceModule(file('none.mjs', 'export const x = 1;'))).rejects.toThrow(/default export must be/);
    for (const f of ['missing.mjs', 'syntax.mjs']) {
      const msg = await loadServiceModule(join(dir, f)).catch((e: Error) => e.message);
      expect(msg).not.toContain('\n');
    }
  });
});
