// upper.ts: a card program for `vphi serve --service upper.ts`. It listens on
// card port 3000 and sends back everything it receives, in upper case.
import type { ScifApi, ScifEndpoint } from '../../scif/api.ts';

export default async function upper(api: ScifApi): Promise<void> {
  const lep = api.open();
  lep.bind(3000);
  lep.listen(16);
  for (;;) {
    const { ep } = await lep.accept({ block: true }); // rejects when the card goes down
    void serve(ep);
  }
}

async function serve(ep: ScifEndpoint): Promise<void> {
  try {
    for (;;) {
      const first = await ep.recv(1, { block: true }); // waits; ECONNRESET once the peer has closed
      const rest = await ep.recv(4095); // non-blocking: whatever else is already there
      const text = Buffer.concat([first, rest]).toString('latin1').toUpperCase();
      await ep.send(Buffer.from(text, 'latin1'), { block: true });
    }
  } catch {
    // The peer went, or the card stopped.
  } finally {
    await ep.close();
  }
}
