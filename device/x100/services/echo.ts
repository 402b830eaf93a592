/**
 * Port 2000: every byte received goes back, in order, until the peer
 * disconnects. At most one ring's worth is held at a time: the next read
 * waits until the last chunk is sent, so buffering stays bounded and a
 * client that interleaves its sends and receives never deadlocks.
 */
import type { ScifEndpoint } from '../scif/api.ts';
import { PortService } from './listener.ts';
import { isPeerGone, sendAll } from './stream.ts';

export const ECHO_PORT = 2000;
/** The most held between a receive and its send (one SCIF_ENDPT_QP_SIZE ring). */
export const ECHO_CHUNK = 0x1000;

export class EchoService extends PortService {
  readonly name = 'echo';
  readonly port = ECHO_PORT;

  protected async serve(ep: ScifEndpoint): Promise<void> {
    for (;;) {
      let data: Uint8Array;
      try {
        // Block for the first byte, then take whatever else is there.
        const first = await ep.recv(1, { block: true });
        if (first.length === 0) return;
        const rest = await ep.recv(ECHO_CHUNK - 1, { block: false }).catch((e: unknown) => {
          if (isPeerGone(e)) return new Uint8Array(0);
          throw e;
        });
        data = rest.length ? Buffer.concat([first, rest]) : first;
      } catch (e) {
        if (isPeerGone(e)) return;
        throw e;
      }
      await sendAll(ep, data);
    }
  }
}
