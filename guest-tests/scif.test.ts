/**
 * End to end with the real host SCIF driver: the card's SCIF node
 * (device/x100/scif/) under the unmodified Linux MIC stack in a QEMU guest
 * (guest-tests/mic-scif.sh). The card runs two test services: an echo on
 * card port 7, and a client that connects to host port 3000 once node 0 is
 * up (retrying every second, as cosm_scif_connect() does), sends
 * "from-card" and reads the echo; and a service on card port 9 that makes
 * the card leave SCIF on its own when connected to. Runs against every MIC guest kernel
 * present: Linux 5.8.1 (MIC_GUEST_KERNEL or the default) and 4.9.45.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadNativeBinding, nativeAvailable } from '../src/binding/native.ts';
import { qemuBinary } from '../src/qemu/command.ts';
import { MIC_APPEND, micKernel } from '../src/qemu/kernel.ts';
import { DeviceServer } from '../src/server.ts';
import { memoryTracer } from '../src/trace/tracer.ts';
import { x100Spec, type X100Card } from '../device/x100/card.ts';
import { POLLIN, type CardService, type ScifApi } from '../device/x100/scif/api.ts';
import { micGuestFiles, runGuest, type GuestResult } from './guest.ts';
import { findResult } from './ktap.ts';

const TESTS = ['boot-write', 'node-1-running', 'scif-peer-dev1', 'get-nodeids', 'echo-from-card', 'stream-256k', 'sixteen-at-once', 'unbound-port-refused', 'card-connects-to-host', 'card-initiated-exit', 'reset-ready', 'no-driver-errors'];

/** Echo on a card port: poll, take what is there, send it back. */
function echoService(port: number): CardService {
  return {
    name: `echo:${port}`,
    start(api: ScifApi) {
      const l = api.open();
      l.bind(port);
      l.listen(32); // sixteen-at-once: all 16 requests may queue before accept takes one (scif_cnctreq() rejects beyond the backlog)
      void (async () => {
        for (;;) {
          const { ep } = await l.accept();
          void (async () => {
            for (;;) {
              const ev = await ep.poll(POLLIN);
              const b = ev & POLLIN ? await ep.recv(4096).catch(() => null) : null;
              if (!b || !b.length) return ep.close();
              await ep.send(b, { block: true }).catch(() => 0);
            }
          })();
        }
      })().catch(() => undefined);
    },
    stop() {},
  };
}

/** Connects to a host port until it is listened on, sends `text`, records the echo. */
function clientService(port: number, text: string, got: string[]): CardService {
  let live = false;
  return {
    name: `client:${port}`,
    start(api: ScifApi) {
      live = true;
      void (async () => {
        while (live) {
          const ep = api.open();
          try {
            await ep.connect({ node: 0, port });
            await ep.send(new TextEncoder().encode(text), { block: true });
            got.push(new TextDecoder().decode(await ep.recv(text.length, { block: true })));
            await ep.close();
            return;
          } catch {
            await ep.close();
            await new Promise((r) => setTimeout(r, 1000));
          }
        }
      })();
    },
    stop() {
      live = false;
    },
  };
}

/** Any connection to `port` makes the card leave SCIF (ScifNode.exit(), what the COSM client does at shutdown). */
function exitService(port: number, node: () => X100Card): CardService {
  return {
    name: `exit:${port}`,
    start(api: ScifApi) {
      const l = api.open();
      l.bind(port);
      l.listen(1);
      void l.accept().then(() => node().scif.exit()).catch(() => undefined);
    },
    stop() {},
  };
}

const kernels: [string, string | null][] = [
  ['5.8.1', micKernel()],
  ['4.9.45', existsSync(join(homedir(), '.cache/vphi/k49/bzImage')) ? join(homedir(), '.cache/vphi/k49/bzImage') : null],
];
const runnable = nativeAvailable() && existsSync(qemuBinary());

for (const [version, kernel] of kernels) {
  if (!kernel) console.log(`SKIP: no MIC guest kernel ${version}`);
  describe.skipIf(!kernel || !runnable)(`the host SCIF driver (Linux ${version}) and the card's SCIF node`, () => {
    let dir: string;
    let server: DeviceServer<X100Card>;
    let run: GuestResult;
    const tracer = memoryTracer();
    const echoed: string[] = [];

    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), 'vphi-scif-test-'));
      const socketPath = join(dir, 'card.sock');
      const services = [echoService(7), clientService(3000, 'from-card', echoed), exitService(9, () => server.device)];
      server = new DeviceServer(loadNativeBinding(), x100Spec({ apertureSize: 0x2000_0000, services }), { socketPath, tracer });
      run = await runGuest({
        socketPath,
        kernel: kernel!,
        append: `${MIC_APPEND} vphi.timeout=120`,
        tests: ['mic-scif'],
        files: micGuestFiles(),
        memoryMiB: 512,
        timeoutMs: 120_000,
      });
    }, 140_000);

    afterAll(() => {
      server?.close();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    it('every guest check passed', () => {
      const why = run.lines.slice(-60).join('\n');
      for (const name of TESTS) {
        const r = findResult(run.ktap, 'mic-scif', name);
        expect(r?.ok, `${name}: ${r?.diagnostics.join('\n') ?? 'missing'}\n${why}`).toBe(true);
      }
      expect(run.rc, why).toBe(0);
    });

    it('the card saw the protocol in order: INIT both ways, connections, its own EXIT answered', () => {
      const scif = tracer.events.filter((e) => e.kind === 'scif');
      const ops = scif.filter((e) => e.dir).map((e) => `${e.dir} ${e.op}`);
      expect(ops.slice(0, 2)).toEqual(['tx SCIF_INIT', 'rx SCIF_INIT']);
      expect(ops).toContain('rx SCIF_CNCT_REQ');
      expect(ops).toContain('tx SCIF_CNCT_GNT');
      expect(ops).toContain('tx SCIF_CNCT_REJ');
      expect(ops).toContain('tx SCIF_CNCT_GNTACK');
      // The card's SCIF_EXIT, then (messages the host had in flight, e.g. the CLIENT_SENT of "bye") its SCIF_EXIT_ACK, last.
      expect(ops.filter((o) => o === 'tx SCIF_EXIT')).toHaveLength(1);
      expect(ops.at(-1)).toBe('rx SCIF_EXIT_ACK');
      expect(ops.indexOf('tx SCIF_EXIT')).toBeLessThan(ops.length - 1);
      expect(scif.filter((e) => e.action === 'state').map((e) => e.state)).toEqual(['waiting', 'published', 'online', 'exiting', 'exited', 'off']);
      expect(scif.filter((e) => e.error)).toEqual([]);
      expect(echoed).toEqual(['from-card']);
      // Left SCIF: 0xFF / 0 in the device page for the host's next poll.
      expect(scif.filter((e) => e.action === 'state' && e.state === 'exited').map((e) => e.reason)).toEqual(['SCIF_EXIT_ACK']);
    });
  });
}
