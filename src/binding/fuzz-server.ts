/**
 * The protocol fuzzer's server process: the real x100 card (x100Spec, no
 * card services) over the native addon on `argv[2]`, alone in its own
 * process so that a crash, a hang or a sanitizer report is the server's
 * and nobody else's (`npm run fuzz` runs it with ASan preloaded). JSON
 * lines on stdout: {up}, then {closed} once stdin ends.
 *
 *   node --import tsx src/binding/fuzz-server.ts SOCKET [APERTURE_BYTES]
 */
import { x100Spec } from '../../device/x100/card.ts';
import { DeviceServer } from '../server.ts';
import { loadNativeBinding } from './native.ts';

const [socketPath, aperture] = process.argv.slice(2);
if (!socketPath) {
  process.stderr.write('usage: fuzz-server.ts SOCKET [APERTURE_BYTES]\n');
  process.exit(2);
}
const say = (m: Record<string, unknown>): void => {
  process.stdout.write(`${JSON.stringify(m)}\n`);
};
let errors = 0;
const server = new DeviceServer(
  loadNativeBinding(),
  x100Spec({ apertureSize: aperture ? Number(aperture) : 16 << 20, services: [], cosm: false }),
  {
    socketPath,
    // libvfio-user's complaints about the garbage are expected: count them only.
    log: (level, msg) => {
      if (level === 'error') errors++;
      if (process.env.VPHI_FUZZ_VERBOSE) process.stderr.write(`fuzz-server ${level}: ${msg}\n`);
    },
  },
);
say({ up: true, pid: process.pid });
process.stdin.on('end', () => {
  server.close();
  say({ closed: true, errors });
});
process.stdin.resume();
