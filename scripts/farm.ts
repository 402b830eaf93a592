/**
 * npm run farm: several guests per host, as a CI farm would run vphi. N
 * `vphi serve` processes (default 4) and N QEMUs at once, each MIC guest
 * booting its own card to online and running the RMA soak against it
 * (vphi-scif-rma soak, every copy checked by pattern + CRC32). Prints each
 * guest's boot-to-online time, soak summary and its server's RSS, and exits
 * 1 if any guest failed, any copy mismatched, or a server died. Not a test.
 *
 *   npm run farm [-- --guests N] [-- --mib M]   (defaults 4 and 64)
 *   MIC_GUEST_KERNEL   else ~/.cache/vphi/bzImage
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { REPO_ROOT } from '../src/paths.ts';
import { micKernel, MIC_APPEND } from '../src/qemu/kernel.ts';
import { micGuestFiles } from '../src/guest/image.ts';
import { runGuest, type GuestResult } from '../guest-tests/guest.ts';
import { runMain } from './main.ts';

const rssKiB = (pid: number): number => Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN);

async function serveOn(socketPath: string): Promise<ChildProcess> {
  const p = spawn(join(REPO_ROOT, 'bin/vphi'), ['serve', '--socket-path', socketPath], { stdio: ['ignore', 'ignore', 'inherit'] });
  for (let i = 0; i < 300 && !existsSync(socketPath); i++) {
    if (p.exitCode !== null) throw new Error(`vphi serve exited (${p.exitCode})`);
    await new Promise((r) => setTimeout(r, 100));
  }
  if (!existsSync(socketPath)) throw new Error(`no socket at ${socketPath}`);
  return p;
}

async function main(): Promise<number> {
  const { values } = parseArgs({ options: { guests: { type: 'string' }, mib: { type: 'string' } } });
  const n = Number(values.guests ?? 4);
  const mib = Number(values.mib ?? 64);
  if (!Number.isInteger(n) || n < 1 || n > 16) throw new Error(`--guests wants 1..16, got '${values.guests}'`);
  if (!(mib > 0)) throw new Error(`--mib wants a positive number, got '${values.mib}'`);
  const kernel = micKernel();
  if (!kernel) {
    process.stdout.write('SKIP: no MIC guest kernel (scripts/build-guest-kernel, or MIC_GUEST_KERNEL)\n');
    return 0;
  }
  const dir = mkdtempSync(join(tmpdir(), 'vphi-farm-'));
  const servers: ChildProcess[] = [];
  try {
    for (let k = 0; k < n; k++) servers.push(await serveOn(join(dir, `card${k}.sock`)));
    const rss0 = servers.map((s) => rssKiB(s.pid!));
    process.stdout.write(`farm: ${n} vphi serve processes and ${n} QEMUs at once, ${mib} MiB of RMA soak each (${kernel})\n`);
    const bytes = Math.round(mib * 2 ** 20);
    const t0 = Date.now();
    const runs = await Promise.allSettled(
      servers.map((_, k) =>
        runGuest({
          socketPath: join(dir, `card${k}.sock`),
          kernel,
          append: `${MIC_APPEND} vphi.scif_strict=1 vphi.timeout=1800`,
          tests: ['mic-scif-boot', `vphi-scif-rma soak --node 1 --soak-bytes ${bytes} --seed ${k + 1}`, 'vphi-scif-rma aligned card-writeto --node 1'],
          files: micGuestFiles(),
          timeoutMs: 3600_000,
        }),
      ),
    );
    let bad = 0;
    runs.forEach((r, k) => {
      const alive = servers[k].exitCode === null;
      const rss = alive ? rssKiB(servers[k].pid!) : NaN;
      if (r.status === 'rejected') {
        bad++;
        process.stdout.write(`guest ${k}: FAILED: ${(r.reason as Error).message.split('\n')[0]}\n`);
        return;
      }
      const g: GuestResult = r.value;
      const online = g.lines.map((l) => /boot_to_online_s=([\d.]+)/.exec(l)?.[1]).find(Boolean) ?? '?';
      const soak = g.lines.map((l) => /soak: transfers=(\d+) bytes=(\d+) mismatches=(\d+) failed=(\d+)/.exec(l)).find(Boolean);
      const ok = g.rc === 0 && alive && !!soak && soak[3] === '0' && soak[4] === '0';
      if (!ok) bad++;
      process.stdout.write(
        `guest ${k}: ${ok ? 'ok' : 'FAILED'}, online ${online} s after boot, ` +
          (soak ? `${soak[1]} transfers, ${soak[2]} bytes, ${soak[3]} mismatches, ${soak[4]} failed` : 'no soak summary') +
          `, guest rc ${g.rc}, server ${alive ? `alive, RSS ${(rss0[k] / 1024).toFixed(0)} -> ${(rss / 1024).toFixed(0)} MiB` : 'DEAD'}\n`,
      );
    });
    process.stdout.write(`farm: ${n - bad} of ${n} guests passed in ${((Date.now() - t0) / 1000).toFixed(0)} s\n`);
    return bad ? 1 : 0;
  } finally {
    for (const s of servers) s.kill('SIGTERM');
    await Promise.all(servers.map((s) => (s.exitCode === null ? new Promise((r) => s.once('exit', r)) : null)));
    rmSync(dir, { recursive: true, force: true });
  }
}

runMain('farm', main);
