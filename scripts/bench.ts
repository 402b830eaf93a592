/**
 * npm run bench: figures measured side by side in one run, printed as
 * ratios. Not a test: nothing here asserts a time.
 *
 * 1. Trapped BAR read round trip: vphi (BAR4 SPAD0) against libvfio-user's
 *    own C sample server (BAR0), built from the same source, with the same
 *    client (scripts/bench/vfu-rtt.c) and the same access pattern (8-byte
 *    reads). vphi is measured with tracing off and on, and then with server
 *    and client pinned to one CPU (taskset), where the servers' own work
 *    shows instead of the machine's cross-CPU wake-ups.
 * 2. Copy bandwidth through fd-mapped guest memory (the guest RAM QEMU maps
 *    into vphi) against Buffer.copy between two Node buffers, for 4 KiB,
 *    1 MiB and 16 MiB.
 * 3. DMA engine throughput with (1 MiB - 64 B) descriptors, guest RAM → card
 *    and card → guest RAM, against Buffer.copy of the same sizes; and the
 *    same transfer driven end to end by the guest's vphi-dma program.
 * 5. SCIF from a MIC guest (with a MIC kernel): `echo boot` to `online`, the
 *    64-byte send/recv round trip on the card's echo next to the same round
 *    trip against the guest's own loopback node 0, and stream bandwidth,
 *    beside the guest's trapped MMIO read round trip of the same run.
 * 6. SCIF RMA from a MIC guest (vphi-scif-rma bench): writeto/readfrom with
 *    SYNC, vwriteto/vreadfrom and card-initiated copies from 4 KiB to
 *    16 MiB against the card's RMA agent, beside the host's own loopback
 *    RMA (node 0 to node 0, CPU copies) and the DMA engine's in-process
 *    figure of section 3 of the same run.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { debianKernel, micKernel } from '../src/qemu/kernel.ts';
import { findResult } from '../guest-tests/ktap.ts';
import { REPO_ROOT } from '../src/paths.ts';
import { buildGuestInitramfs } from '../src/guest/image.ts';
import { startCard } from '../src/cli/serve.ts';
import { startQemu } from '../src/qemu/run.ts';
import { runCardGuest, runMicGuest } from '../guest-tests/card-guest.ts';
import type { GuestResult } from '../guest-tests/guest.ts';
import type { DeviceServer } from '../src/server.ts';
import type { X100Card } from '../device/x100/card.ts';
import { SYSTEM_WINDOW_BASE } from '../device/x100/smpt/regs.ts';
import { bar4Field, bar4Offset } from './bench/bar4.ts';

const LVU = join(REPO_ROOT, '.cache/lvu');
const BENCH = join(REPO_ROOT, '.cache/bench');
const READS = Number(process.env.VPHI_BENCH_READS ?? 10000);
const ROUNDS = Number(process.env.VPHI_BENCH_ROUNDS ?? 5);

function line(s = ''): void {
  process.stdout.write(s + '\n');
}

function fmtRate(bytesPerSec: number): string {
  return bytesPerSec >= 1e9 ? `${(bytesPerSec / 1e9).toFixed(2)} GB/s` : `${(bytesPerSec / 1e6).toFixed(1)} MB/s`;
}

function vfuRtt(): string {
  mkdirSync(BENCH, { recursive: true });
  const out = join(BENCH, 'vfu-rtt');
  const src = join(REPO_ROOT, 'scripts/bench/vfu-rtt.c');
  if (!existsSync(out) || statSync(out).mtimeMs < statSync(src).mtimeMs) {
    execFileSync('gcc', ['-O2', '-Wall', '-Werror', `-I${LVU}/prefix/include`, '-o', out, src]);
  }
  return out;
}

async function waitForSocket(path: string, proc: ChildProcess): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (existsSync(path)) return;
    if (proc.exitCode !== null) throw new Error(`server exited early (${proc.exitCode})`);
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`no socket at ${path}`);
}

/** taskset, to run server and client on one CPU (pinned rounds); undefined where it is missing. */
const TASKSET = ['/usr/bin/taskset', '/bin/taskset'].find((p) => existsSync(p));
const pinned = (argv: string[]): string[] => [TASKSET!, '-c', '0', ...argv];

async function rtt(server: string[], region: number, offset: number, sock: string, pin = false, reads = READS): Promise<number> {
  const argv = pin ? pinned(server) : server;
  const proc = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  proc.stderr?.on('data', (d) => (err += d));
  try {
    await waitForSocket(sock, proc);
    const client = [vfuRtt(), sock, String(region), `0x${offset.toString(16)}`, '8', String(reads)];
    const c = pin ? pinned(client) : client;
    const out = execFileSync(c[0], c.slice(1), { encoding: 'utf8' });
    return (JSON.parse(out) as { mean_ns: number }).mean_ns;
  } catch (e) {
    throw new Error(`${(e as Error).message}\n${err}`);
  } finally {
    proc.kill('SIGTERM');
    await new Promise((r) => proc.once('exit', r));
  }
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1];

async function benchRtt(dir: string): Promise<void> {
  line('1. Trapped BAR read round trip (8-byte reads, same client, separate server processes;');
  line(`   median of ${ROUNDS} interleaved rounds of ${READS} reads each)`);
  const sample = join(LVU, 'build/samples/server');
  const vphi = join(REPO_ROOT, 'bin/vphi');
  const c: number[] = [], v: number[] = [], vt: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    // Fresh socket names each round: the C sample server leaves its socket file behind.
    const sock = (n: string) => join(dir, `${n}${i}.sock`);
    c.push(await rtt([sample, sock('c')], 0, 0, sock('c')));
    v.push(await rtt([vphi, 'serve', '--socket-path', sock('v')], 4, bar4Offset('SPAD0'), sock('v')));
    vt.push(await rtt([vphi, 'serve', '--socket-path', sock('t'), '--trace', join(dir, `t${i}.jsonl`)], 4, bar4Offset('SPAD0'), sock('t')));
  }
  const [mc, mv, mt] = [median(c), median(v), median(vt)];
  line(`   libvfio-user C sample server (BAR0):  ${(mc / 1000).toFixed(1)} µs`);
  line(`   vphi (BAR4 SPAD0), trace off:         ${(mv / 1000).toFixed(1)} µs   ratio vphi/C = ${(mv / mc).toFixed(2)}`);
  line(`   vphi (BAR4 SPAD0), trace on:          ${(mt / 1000).toFixed(1)} µs   ratio trace-on/off = ${(mt / mv).toFixed(2)}`);
  // vphi and C of the same round ran back to back: the median of their ratios shrugs off a busy machine.
  const vc = v.map((x, i) => x / c[i]);
  line(`   vphi/C within a round:                median ${median(vc).toFixed(2)}   (${vc.map((r) => r.toFixed(2)).join(' ')})`);
  // On and off of the same round ran back to back: their ratio shrugs off a busy machine.
  const rounds = vt.map((t, i) => t / v[i]);
  line(`   trace-on/off within a round:          median ${median(rounds).toFixed(2)}   (${rounds.map((r) => r.toFixed(2)).join(' ')})`);
  if (!TASKSET) {
    line('   (no taskset: pinned rounds skipped)');
    return;
  }
  // Across two CPUs each round trip waits for two cross-CPU wake-ups, which on a
  // virtual machine cost more than either server's work and vary from round to
  // round. Server and client on one CPU: the round trip is the work of both
  // sides and two context switches, so the servers' own cost shows.
  const pc: number[] = [], pv: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    const sock = (n: string) => join(dir, `p${n}${i}.sock`);
    // Five times the reads: a pinned read is quick, and more of them steady the mean.
    pc.push(await rtt([sample, sock('c')], 0, 0, sock('c'), true, 5 * READS));
    pv.push(await rtt([vphi, 'serve', '--socket-path', sock('v')], 4, bar4Offset('SPAD0'), sock('v'), true, 5 * READS));
  }
  const [mpc, mpv] = [median(pc), median(pv)];
  const pvc = pv.map((x, i) => x / pc[i]);
  line(`   pinned to one CPU (taskset -c 0), C sample: ${(mpc / 1000).toFixed(1)} µs, vphi trace off: ${(mpv / 1000).toFixed(1)} µs   ratio vphi/C = ${(mpv / mpc).toFixed(2)}`);
  line(`   pinned vphi/C within a round:         median ${median(pvc).toFixed(2)}   (${pvc.map((r) => r.toFixed(2)).join(' ')})`);
}

/** Mean seconds per call of fn over at least `minMs` and `minIter` calls. */
function time(fn: () => void, minMs = 300, minIter = 5): number {
  fn();
  let n = 0;
  const t0 = process.hrtime.bigint();
  let el = 0;
  while (n < minIter || el < minMs * 1e6) {
    fn();
    n++;
    el = Number(process.hrtime.bigint() - t0);
  }
  return el / 1e9 / n;
}

interface Session {
  server: DeviceServer<X100Card>;
  stop(): Promise<void>;
}

/** The card in this process and an idle Debian guest, so guest RAM is mapped. */
async function session(dir: string): Promise<Session> {
  const socketPath = join(dir, 'card.sock');
  const server = await startCard({ socketPath, apertureSize: 512 << 20, verbose: false }, () => {});
  const initrd = await buildGuestInitramfs([]);
  const q = startQemu(
    { kernel: debianKernel(), initrd, append: 'vphi.tests=sleep,600', memoryMiB: 1024, socketPath },
    { timeoutMs: 900_000 },
  );
  await q.waitFor(/VPHI-GUEST-START/, 120_000);
  return {
    server,
    stop: async () => {
      q.kill();
      await q.exited;
      server.close();
    },
  };
}

function ramRegion(s: Session): { iova: bigint; length: number } {
  const r = s.server.host.list().filter((x) => x.usable).sort((a, b) => b.length - a.length)[0];
  if (!r) throw new Error('no fd-mapped guest RAM');
  return r;
}

function benchCopy(s: Session): void {
  line('2. Copy bandwidth: fd-mapped guest RAM → card memory (memfd) against Buffer.copy');
  const ram = ramRegion(s);
  const ap = s.server.device.aperture;
  for (const size of [4096, 1 << 20, 16 << 20]) {
    const src = s.server.host.view(ram.iova + 0x1000000n, size);
    const a = Buffer.alloc(size, 1);
    const b = Buffer.alloc(size);
    const tv = time(() => ap.set(src, 0x100000));
    const tb = time(() => a.copy(b));
    const label = size >= 1 << 20 ? `${size >> 20} MiB` : `${size >> 10} KiB`;
    line(`   ${label.padEnd(7)} guest RAM: ${fmtRate(size / tv).padStart(11)}   Buffer.copy: ${fmtRate(size / tb).padStart(11)}   ratio ${(tb / tv).toFixed(2)}`);
  }
}


/** Drive channel 0 as mic_x100_dma does, ring in card memory, and time `total` bytes. */
function benchEngine(s: Session): void {
  line('3. DMA engine, (1 MiB - 64 B) descriptors, run to completion in-process, against Buffer.copy');
  const card = s.server.device;
  const w = (name: string, v: number) => card.bar4.write(bar4Offset(name), 4, v);
  const r = (name: string) => card.bar4.read(bar4Offset(name), 4);
  const ram = ramRegion(s);
  for (let i = 0; i < 32; i++) w(`SMPT${i}`, i << 2); // mic_smpt_init(): identity
  const RING = 0x1000000; // GDDR
  const N = 1024;
  const DESC = (1 << 20) - 64;
  const COUNT = 64; // 64 MiB per run
  const en0 = bar4Field('DCR', 'EN0');
  const count = bar4Field('DSTAT0', 'COUNT');
  w('DCR', en0.set(r('DCR'), 0)); // mic_dma_disable_chan()
  w('DRAR_LO0', RING);
  w('DRAR_HI0', bar4Field('DRAR_HI0', 'SIZE').set(0, N)); // ring in GDDR: SYS clear
  w('DCR', en0.set(r('DCR'), 1)); // mic_dma_enable_chan()
  let head = r('DTPR0');
  const hostBase = SYSTEM_WINDOW_BASE + ram.iova + 0x1000000n; // SMPT identity: guest physical P at window + P
  const cardBase = 0x2000000;
  const run = (toCard: boolean) => {
    for (let i = 0; i < COUNT; i++) {
      const src = toCard ? hostBase + BigInt(i * DESC) : BigInt(cardBase + i * DESC);
      const dst = toCard ? BigInt(cardBase + i * DESC) : hostBase + BigInt(i * DESC);
      const slot = RING + 16 * head;
      card.aperture.writeBigUInt64LE(src | (BigInt(DESC / 64) << 46n), slot);
      card.aperture.writeBigUInt64LE(dst | (1n << 60n), slot + 8);
      head = (head + 1) % N;
    }
    w('DHPR0', head);
    // Busy-poll DSTAT as dma_sync_wait() does; each read runs the engine.
    while (count.get(r('DSTAT0')) !== head) {
      /* poll */
    }
  };
  // The same footprint as the engine's run: COUNT distinct chunks, not one cache-hot buffer.
  const a = Buffer.alloc(COUNT * DESC, 1);
  const b = Buffer.alloc(COUNT * DESC);
  const tb = time(() => {
    for (let i = 0; i < COUNT; i++) a.copy(b, i * DESC, i * DESC, (i + 1) * DESC);
  });
  for (const toCard of [true, false]) {
    const t = time(() => run(toCard));
    engineRate[toCard ? 'toCard' : 'fromCard'] = (COUNT * DESC) / t;
    line(`   ${toCard ? 'guest RAM → card' : 'card → guest RAM'}: ${fmtRate((COUNT * DESC) / t).padStart(11)}   Buffer.copy: ${fmtRate((COUNT * DESC) / tb).padStart(11)}   ratio ${(tb / t).toFixed(2)}`);
  }
  if (r('DCHERR0')) line(`   (DCHERR0 = 0x${r('DCHERR0').toString(16)}: the run had an error)`);
}

/** Section 3's figures (bytes/s), for section 6. */
const engineRate: { toCard?: number; fromCard?: number } = {};

async function benchGuest(): Promise<void> {
  line('4. The same transfers driven by the guest (vphi-dma bench: TCG guest, real vfio-user path)');
  const guest = await runCardGuest({ name: 'vphi-bench-dma', tests: ['vphi-dma bench'], memoryMiB: 1024, timeoutMs: 300_000 });
  try {
    const res = guest.run;
    const lines = res.lines.filter((l) => /# bench /.test(l)).map((l) => l.replace(/^\s*# bench /, ''));
    if (!lines.length) line('   (vphi-dma printed no bench lines)');
    for (const l of lines) line(`   ${l}`);
  } finally {
    guest.close();
  }
}

/** KTAP diagnostics of one command (and its subtests) that start with `key=`. */
function diags(res: GuestResult, cmd: string, key: string): string[] {
  const r = findResult(res.ktap, cmd);
  const all = [r, ...(r?.subtests?.results ?? [])].flatMap((x) => x?.diagnostics ?? []);
  return all.filter((d) => d.startsWith(`${key}=`));
}

const num = (d: string | undefined): number => (d ? Number(/=([\d.]+)/.exec(d)?.[1]) : NaN);

async function benchScif(): Promise<void> {
  line('5. SCIF from a MIC guest (TCG; the unmodified host SCIF driver, the card services)');
  const kernel = micKernel();
  if (!kernel) {
    line('   SKIP: no MIC guest kernel');
    return;
  }
  const CMD = { boot: 'mic-scif-boot', mmio: 'vphi-probe rtt', loop: 'mic-scif-loop bench', card: 'vphi-scif bench --node 1' };
  const guest = await runMicGuest({ kernel, name: 'vphi-bench-scif', tests: Object.values(CMD), scifStrict: false, timeoutMs: 600_000 });
  try {
    const res = guest.run;
    const online = diags(res, CMD.boot, 'boot_to_online_s')[0];
    const mmio = diags(res, CMD.mmio, 'mmio_rtt_us')[0];
    const [lr, cr] = [diags(res, CMD.loop, 'rtt_us')[0], diags(res, CMD.card, 'rtt_us')[0]];
    line(`   echo boot → online:            ${online ? `${num(online).toFixed(2)} s` : '(not measured)'}`);
    line(`   trapped MMIO read (guest):     ${mmio ? `${num(mmio)} µs` : '(not measured)'}`);
    line(`   64-byte round trip, card echo: ${num(cr)} µs   loopback node 0: ${num(lr)} µs   ratio card/loopback = ${(num(cr) / num(lr)).toFixed(2)}`);
    const streams = (cmd: string) => new Map(diags(res, cmd, 'stream_h2c_bytes').concat(diags(res, cmd, 'stream_c2h_bytes')).map((d) => [d.split(' ')[0], Number(/MBps=([\d.]+)/.exec(d)?.[1])]));
    const [ls, cs] = [streams(CMD.loop), streams(CMD.card)];
    for (const [k, v] of cs) {
      const [dirn, size] = k.split('=');
      const l = ls.get(k);
      line(`   stream ${dirn === 'stream_h2c_bytes' ? 'host → card' : 'card → host'} ${String(size).padStart(7)} B messages: card ${v.toFixed(1)} MB/s   loopback ${l?.toFixed(1) ?? '?'} MB/s`);
    }
    if (res.rc !== 0) line(`   (the guest reported failures: rc ${res.rc})`);
  } finally {
    guest.close();
  }
}

/** The directions of vphi-scif-rma bench's "rma_<dir>_bytes=N MBps=X" lines. */
const RMA_DIRS = ['writeto', 'readfrom', 'vwriteto', 'vreadfrom', 'card_writeto', 'card_readfrom'];

async function benchRma(): Promise<void> {
  line('6. SCIF RMA from a MIC guest (TCG; SYNC copies, vphi-scif-rma bench), card against the host loopback node 0');
  const kernel = micKernel();
  if (!kernel) {
    line('   SKIP: no MIC guest kernel');
    return;
  }
  const e = engineRate;
  line(`   DMA engine in-process (section 3): ${e.toCard ? `${fmtRate(e.toCard)} to card, ${fmtRate(e.fromCard ?? NaN)} from card` : '(section 3 not run: VPHI_BENCH_ONLY)'}`);
  const CMD = { boot: 'mic-scif-boot', loop: 'mic-scif-rma-loop bench', card: 'vphi-scif-rma bench --node 1' };
  const guest = await runMicGuest({ kernel, name: 'vphi-bench-rma', tests: Object.values(CMD), scifStrict: false, commandTimeoutS: 900, timeoutMs: 1_200_000 });
  try {
    const res = guest.run;
    // rma_<dir>_bytes=N MBps=X → Map "<dir> N" → MB/s
    const rates = (cmd: string) => {
      const m = new Map<string, number>();
      for (const d of RMA_DIRS.flatMap((k) => diags(res, cmd, `rma_${k}_bytes`))) {
        const x = /^rma_(\w+)_bytes=(\d+) MBps=([\d.]+)/.exec(d);
        if (x) m.set(`${x[1]} ${x[2]}`, Number(x[3]));
      }
      return m;
    };
    const [card, loop] = [rates(CMD.card), rates(CMD.loop)];
    if (!card.size) line('   (the card bench printed no figures)');
    const size = (n: number) => (n >= 1 << 20 ? `${n >> 20} MiB` : `${n >> 10} KiB`);
    for (const k of RMA_DIRS) {
      for (let n = 4096; n <= 16 << 20; n *= 4) {
        const c = card.get(`${k} ${n}`);
        if (c === undefined) continue;
        const l = loop.get(`${k} ${n}`);
        const ratio = l ? `   ratio ${(c / l).toFixed(2)}` : '';
        line(`   ${k.replace('_', '-').padEnd(13)} ${size(n).padStart(7)}: card ${fmtRate(c * 1e6).padStart(11)}   loopback ${l ? fmtRate(l * 1e6).padStart(11) : '          ?'}${ratio}`);
      }
    }
    const big = [...card].filter(([k]) => Number(k.split(' ')[1]) >= 1 << 20).map(([, v]) => v * 1e6);
    if (big.length) line(`   at 1 MiB and above: card ${fmtRate(Math.min(...big))} .. ${fmtRate(Math.max(...big))} (goal 6.5 GB/s)`);
    if (res.rc !== 0) line(`   (the guest reported failures: rc ${res.rc})`);
  } finally {
    guest.close();
  }
}

/**
 * `--only rtt,copy` (npm run bench -- --only rtt) or VPHI_BENCH_ONLY=rtt,copy,guest,scif,rma
 * runs a subset (default: everything); --only wins.
 */
const onlyArg = process.argv.indexOf('--only');
const ONLY = new Set(((onlyArg >= 0 ? process.argv[onlyArg + 1] : undefined) ?? process.env.VPHI_BENCH_ONLY ?? 'rtt,copy,guest,scif,rma').split(','));

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'vphi-bench-'));
  try {
    if (ONLY.has('rtt')) {
      await benchRtt(dir);
      line();
    }
    if (ONLY.has('copy')) {
      const s = await session(dir);
      try {
        benchCopy(s);
        line();
        benchEngine(s);
      } finally {
        await s.stop();
      }
      line();
    }
    if (ONLY.has('guest') && existsSync(join(REPO_ROOT, 'guest-tests/vphi-dma.c'))) {
      await benchGuest();
      line();
    }
    if (ONLY.has('scif')) {
      await benchScif();
      line();
    }
    if (ONLY.has('rma')) await benchRma();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`bench: ${(e as Error).message}\n`);
  process.exitCode = 1;
});
