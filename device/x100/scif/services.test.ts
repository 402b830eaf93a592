import { describe, expect, it } from 'vitest';
import { LinuxScifHost } from './testing.ts';
import { POLLIN, type CardService, type ScifApi, type ScifEndpoint } from './api.ts';

/** An echo service on a card port, as a card service would be written. */
function echoService(port: number) {
  const log: string[] = [];
  let listener: ScifEndpoint | null = null;
  const svc: CardService = {
    name: 'echo',
    start(api: ScifApi) {
      log.push(`start ${api.self} ${api.nodeIds().join(',')}`);
      const l = api.open();
      listener = l;
      l.bind(port);
      l.listen(8);
      void (async () => {
        for (;;) {
          const { ep } = await l.accept();
          void (async () => {
            for (;;) {
              // A blocking recv waits for all 16 bytes (_scif_recv()): poll, then take what is there.
              const ev = await ep.poll(POLLIN);
              const b = ev & POLLIN ? await ep.recv(16).catch(() => null) : null;
              if (!b) return;
              await ep.send(b, { block: true });
            }
          })();
        }
      })().catch((e: Error) => log.push(`accept ended: ${e.message.split(':')[0]}`));
    },
    stop() {
      log.push('stop');
      listener = null;
    },
  };
  return { svc, log, listener: () => listener };
}

describe('card services', () => {
  it('start with the node API once node 0 is a live peer and stop when the node goes', async () => {
    const e = echoService(7);
    const h = new LinuxScifHost({ services: [e.svc] });
    expect(e.log).toEqual([]);
    await h.bringUp();
    expect(e.log).toEqual(['start 1 0,1']);
    const hep = h.connectStart(7);
    await h.settle();
    expect(h.connectFinish(hep)).toBe('connected');
    await h.settle();
    h.send(hep, Uint8Array.of(9, 8, 7));
    await h.settle();
    expect(Array.from(h.recv(hep, 3))).toEqual([9, 8, 7]);
    h.resetCard();
    await h.settle();
    expect(e.log).toEqual(['start 1 0,1', 'stop', 'accept ended: ENODEV']);
  });

  it('a service that throws in start is traced and the node stays up', async () => {
    const bad: CardService = { name: 'bad', start: () => { throw new Error('boom'); }, stop: () => undefined };
    const h = new LinuxScifHost({ services: [bad] });
    await h.bringUp();
    expect(h.card.scif.state).toBe('online');
    expect(h.env.tracer.events.some((ev) => ev.kind === 'scif' && ev.service === 'bad' && ev.error === 'boom')).toBe(true);
  });
});
