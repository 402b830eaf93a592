/**
 * Port 2000: every byte received goes back, in order, until the peer
 * disconnects. At most one ring's worth is held at a time: the next read
 * waits until the last chunk is sent, so buffering stays bounded and a
 * client that interleaves its sends and receives never deadlocks.
 */
import { POLLHUP, POLLIN, type ScifEndpoint } from '../scif/api.ts';
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
        // Wait until something is there, then take it in one consume, so the
        // host sees one SCIF_CLIENT_RCVD per chunk (_scif_recv()).
        const ev = await ep.poll(POLLIN);
        data = await ep.recv(ECHO_CHUNK, { block: false });
        if (data.length === 0) {
          if (ev & POLLHUP) return;
          continue;
        }
      } catch (e) {
        if (isPeerGone(e)) return;
        throw e;
      }
      await sendAll(ep, data);
    }
  }
}
