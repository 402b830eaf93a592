/**
 * A reproducer of QEMU's own abort on a vfio-user server that resets the
 * connection (QEMU 11.1.3, hw/vfio-user/proxy.c): when a server closes its
 * socket with bytes of QEMU's still unread, QEMU's next recvmsg() fails with
 * ECONNRESET; qio_channel_socket_readv() sets the Error, and
 * vfio_user_recv_hdr() sets it again ("failed to read header"), so QEMU dies
 * in error_setv: Assertion '*errp == NULL' instead of reporting the lost
 * server. At end of stream (a server that reads what was sent, then closes)
 * the same code path reports "failed to read header: EOF" and goes on.
 *
 * Here the "server" accepts, never reads, and closes after 1 s: QEMU's
 * VFIO_USER_VERSION is left unread, which is enough. vphi itself now ends
 * every connection it drops with an end of stream (native/wire.cc
 * DropConnection()); a server that dies (SIGKILL) still resets it.
 *
 *   node --import tsx scripts/qemu-reset-abort.ts   (exit 0: QEMU aborted as described)
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { qemuBinary } from '../src/qemu/command.ts';
import { runMain } from './main.ts';

runMain('qemu-reset-abort', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vphi-reset-abort-'));
  const sock = join(dir, 'vfio-user.sock');
  const server = net.createServer({ pauseOnConnect: true }, (s) => setTimeout(() => s.destroy(), 1000));
  await new Promise<void>((r) => server.listen(sock, r));
  const qemu = spawn(qemuBinary(), [
    '-machine', 'q35', '-accel', 'tcg', '-m', '256M', '-display', 'none', '-nodefaults',
    '-object', 'memory-backend-memfd,id=mem,size=256M,share=on', '-machine', 'memory-backend=mem',
    '-device', 'pcie-root-port,id=rp0,bus=pcie.0,chassis=1',
    '-device', JSON.stringify({ driver: 'vfio-user-pci', socket: { type: 'unix', path: sock }, bus: 'rp0' }),
    '-trace', 'vfio_user*',
  ], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  qemu.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => qemu.kill('SIGKILL'), 30_000);
  const [code, signal] = await new Promise<[number | null, string | null]>((r) => qemu.on('exit', (c, s) => r([c, s])));
  clearTimeout(timer);
  server.close();
  rmSync(dir, { recursive: true, force: true });
  process.stdout.write(stderr);
  const aborted = signal === 'SIGABRT' || /Assertion .\*errp == NULL. failed/.test(stderr);
  process.stdout.write(`${qemuBinary()}: exit ${code ?? signal}: ${aborted ? 'aborted in error_setv (the bug)' : 'did not abort'}\n`);
  return aborted ? 0 : 1;
});
