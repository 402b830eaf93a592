/**
 * A `vphi serve` process (bin/vphi serve, a child of its own so that its
 * fds and RSS can be measured from /proc) and MIC guests that the caller
 * starts, kills and resets one after another against it: the harness of
 * the soak's kill, reset and cycles modes (scripts/soak.ts) and of
 * reset.test.ts. No vitest here.
 *
 * Each guest gets a QMP socket (`-qmp unix:...`) for `system_reset`, and
 * `-action reboot=reset` after qemuArgs()' `-no-reboot`: with reboot=shutdown
 * QEMU turns even a monitor's system_reset into a shutdown
 * (qemu_system_reset_request()).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT } from '../src/paths.ts';
import { ctlRequest } from '../src/ctl/client.ts';
import { ctlPath } from '../src/cli/serve.ts';
import { buildGuestInitramfs, micGuestFiles } from '../src/guest/image.ts';
import { MIC_APPEND } from '../src/qemu/kernel.ts';
import { startQemu, type RunningQemu } from '../src/qemu/run.ts';
import { testsParam } from './guest.ts';

/** /proc figures of a process. */
export interface ProcStats {
  fds: number;
  /** fds whose link reads 'memfd:...' or '/memfd:...'. */
  memfds: number;
  rssKiB: number;
  /** VmRSS split: anonymous (the heap, malloc) and shared memory (the pages of BAR0's memfd and of guest RAM this process touched). */
  anonKiB: number;
  shmemKiB: number;
}

export function procStats(pid: number): ProcStats {
  let fds = 0;
  let memfds = 0;
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    fds++;
    try {
      if (/^\/?memfd:/.test(readlinkSync(`/proc/${pid}/fd/${fd}`))) memfds++;
    } catch {
      // closed between readdir and readlink
    }
  }
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { fds, memfds, rssKiB: kib('VmRSS'), anonKiB: kib('RssAnon'), shmemKiB: kib('RssShmem') };
}

/** The parts of the card's `vphi ctl status` the harness looks at (src/cli/card-ctl.ts). */
export interface CardStatusView {
  boot: { state: string; postcode: string; crashed: boolean };
  scif: { state: string };
  cosm: { state: string; heartbeats: number };
  dma: { ch: number; owner: string; enabled: boolean; head: number; tail: number; size: number; dcherr: string }[];
}

export interface ServeProc {
  readonly pid: number;
  readonly socketPath: string;
  readonly proc: ChildProcess;
  /** stderr lines so far (run with --verbose: "client attached", "client detached", refusals). */
  readonly log: string[];
  /** How often a client attached, detached. */
  attaches(): number;
  detaches(): number;
  /** Resolves once `cond()` holds (checked at each stderr line and every 100 ms); rejects after timeoutMs. */
  until(what: string, cond: () => boolean, timeoutMs: number): Promise<void>;
  status(): Promise<CardStatusView>;
  /** The server's own memory figures (its control socket: process.memoryUsage(), KiB). */
  memory(): Promise<Record<string, number>>;
  stats(): ProcStats;
  alive(): boolean;
  /** SIGTERM, wait, remove the directory. */
  close(): Promise<void>;
}

/**
 * Start `bin/vphi serve --verbose` on a fresh socket; resolves once it
 * serves. VPHI_SERVE_LOG=FILE: its stderr is appended there too.
 */
export async function startServe(name: string, extra: string[] = []): Promise<ServeProc> {
  const dir = mkdtempSync(join(tmpdir(), `${name}-`));
  const socketPath = join(dir, 'card.sock');
  // VPHI_SERVE_NODE_OPTIONS: NODE_OPTIONS for the server alone (e.g. --heapsnapshot-signal=SIGUSR2).
  const nodeOptions = process.env.VPHI_SERVE_NODE_OPTIONS;
  const env = nodeOptions ? { ...process.env, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} ${nodeOptions}`.trim() } : process.env;
  const proc = spawn(join(REPO_ROOT, 'bin/vphi'), ['serve', '--socket-path', socketPath, '--verbose', ...extra], { stdio: ['ignore', 'ignore', 'pipe'], env });
  const log: string[] = [];
  let buf = '';
  const waiters = new Set<() => void>();
  const poke = () => {
    for (const w of [...waiters]) w();
  };
  proc.stderr!.setEncoding('utf8');
  const logFile = process.env.VPHI_SERVE_LOG;
  proc.stderr!.on('data', (c: string) => {
    if (logFile) appendFileSync(logFile, c);
    buf += c;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      log.push(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
    }
    poke();
  });
  let exited = false;
  const exit = new Promise<void>((resolve) =>
    proc.on('exit', () => {
      exited = true;
      poke();
      resolve();
    }),
  );
  const count = (re: RegExp) => () => log.filter((l) => re.test(l)).length;
  const until = (what: string, cond: () => boolean, timeoutMs: number) =>
    new Promise<void>((resolve, reject) => {
      const check = () => {
        if (cond()) done(null);
        else if (exited) done(new Error(`vphi serve exited while waiting for ${what}\n${log.slice(-20).join('\n')}`));
      };
      const tick = setInterval(check, 100);
      const timer = setTimeout(() => done(new Error(`timed out after ${timeoutMs} ms waiting for ${what}\n${log.slice(-20).join('\n')}`)), timeoutMs);
      const done = (e: Error | null) => {
        clearInterval(tick);
        clearTimeout(timer);
        waiters.delete(check);
        if (e) reject(e);
        else resolve();
      };
      waiters.add(check);
      check();
    });
  const ctlStatus = async () => {
    const r = await ctlRequest(ctlPath(socketPath), { cmd: 'status' });
    if (!r.ok) throw new Error(`vphi ctl status: ${r.error}`);
    return r;
  };
  const s: ServeProc = {
    pid: proc.pid!,
    socketPath,
    proc,
    log,
    attaches: count(/client attached/),
    detaches: count(/client detached/),
    until,
    status: async () => (await ctlStatus()).status as CardStatusView,
    memory: async () => (await ctlStatus()).process as Record<string, number>,
    stats: () => procStats(proc.pid!),
    alive: () => !exited && proc.exitCode === null,
    close: async () => {
      if (!exited) proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 10_000);
      await exit;
      clearTimeout(t);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  process.on('exit', () => proc.kill('SIGKILL'));
  await until('vphi serve to listen', () => log.some((l) => /serving an Intel Xeon Phi/.test(l)), 60_000);
  return s;
}

/** A minimal QMP client: capabilities negotiated, one command at a time, events ignored. */
export class Qmp {
  private buf = '';
  private pending: ((r: Record<string, unknown>) => void)[] = [];
  private constructor(private readonly sock: Socket) {
    sock.setEncoding('utf8');
    sock.on('data', (c: string) => {
      this.buf += c;
      let nl: number;
      while ((nl = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, nl).trim();
        this.buf = this.buf.slice(nl + 1);
        if (!line) continue;
        const msg = JSON.parse(line) as Record<string, unknown>;
        if ('return' in msg || 'error' in msg || 'QMP' in msg) this.pending.shift()?.(msg);
      }
    });
    sock.on('error', () => {});
  }

  /** Connect (retrying while QEMU creates the socket) and negotiate. */
  static async connect(path: string, timeoutMs = 30_000): Promise<Qmp> {
    const t0 = Date.now();
    for (;;) {
      try {
        const sock = await new Promise<Socket>((resolve, reject) => {
          const s = connect(path, () => resolve(s));
          s.once('error', reject);
        });
        const q = new Qmp(sock);
        await new Promise((r) => q.pending.push(r)); // the greeting
        await q.execute('qmp_capabilities');
        return q;
      } catch (e) {
        if (Date.now() - t0 > timeoutMs) throw new Error(`QMP ${path}: ${(e as Error).message}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  }

  execute(cmd: string, args?: Record<string, unknown>): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.pending.push((r) => (r.error ? reject(new Error(`QMP ${cmd}: ${JSON.stringify(r.error)}`)) : resolve(r.return)));
      this.sock.write(JSON.stringify(args ? { execute: cmd, arguments: args } : { execute: cmd }) + '\n');
    });
  }

  close(): void {
    this.sock.destroy();
  }
}

export interface MicQemuOptions {
  kernel: string;
  socketPath: string;
  /** init.sh's commands. */
  tests: string[];
  /** Per command, seconds (vphi.timeout). */
  commandTimeoutS?: number;
  /** Kill QEMU after this long. */
  timeoutMs: number;
  onLine?: (line: string) => void;
  /** A QMP socket at this path. */
  qmpPath?: string;
  /** More QEMU arguments (e.g. -trace). */
  extraArgs?: string[];
  append?: string;
}

let initrd: Promise<string> | undefined;

/** A MIC guest (MIC_APPEND, strict SCIF, the MIC files) against `socketPath`, as runMicGuest boots it. */
export async function startMicQemu(o: MicQemuOptions): Promise<RunningQemu> {
  initrd ??= buildGuestInitramfs([], micGuestFiles());
  const online = process.env.VPHI_SCIF_ONLINE_TIMEOUT;
  const append = [
    testsParam(o.tests),
    MIC_APPEND,
    o.commandTimeoutS !== undefined && `vphi.timeout=${o.commandTimeoutS}`,
    'vphi.scif_strict=1',
    online && `vphi.scif_online_timeout=${online}`,
    o.append,
  ]
    .filter(Boolean)
    .join(' ');
  const extraArgs = [...(o.qmpPath ? ['-qmp', `unix:${o.qmpPath},server=on,wait=off`, '-action', 'reboot=reset'] : []), ...(o.extraArgs ?? [])];
  return startQemu({ kernel: o.kernel, initrd: await initrd, append, memoryMiB: 512, socketPath: o.socketPath, extraArgs }, { onLine: o.onLine, timeoutMs: o.timeoutMs });
}

/** The card is reset and idle: bootstrap ready (or resetting back to it), no DMA channel enabled or in error. */
export function cardIdle(s: CardStatusView): string | null {
  if (s.boot.state !== 'ready') return `boot state '${s.boot.state}'`;
  // SCIF: stop() on a PCI reset leaves it 'off' (ScifNode.stop, device/x100/scif/node.ts).
  if (s.scif.state !== 'off') return `scif state '${s.scif.state}'`;
  const busy = s.dma.filter((c) => c.enabled || c.dcherr !== '0x0');
  if (busy.length) return `DMA channels not idle: ${JSON.stringify(busy)}`;
  return null;
}

/** Resolves once `n` serial lines match `re`; rejects on timeout or QEMU exit. */
export function waitLines(q: RunningQemu, re: RegExp, n: number, timeoutMs: number): Promise<void> {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const tick = setInterval(() => {
      const got = q.lines.filter((l) => re.test(l)).length;
      if (got >= n) {
        clearInterval(tick);
        resolve();
      } else if (q.proc.exitCode !== null || q.proc.signalCode !== null || Date.now() - t0 > timeoutMs) {
        clearInterval(tick);
        const why = Date.now() - t0 > timeoutMs ? `timed out after ${timeoutMs} ms` : 'QEMU exited';
        reject(new Error(`${why} waiting for ${n} lines matching ${re} (${got} so far)\n${q.stderr.slice(-10).join('\n')}\n${q.lines.slice(-40).join('\n')}`));
      }
    }, 100);
  });
}

/** Poll the card's status until `ok(status)` holds; resolves with the status and the ms it took. */
export async function waitStatus(s: ServeProc, ok: (st: CardStatusView) => boolean, timeoutMs: number): Promise<{ status: CardStatusView; ms: number }> {
  const t0 = Date.now();
  for (;;) {
    const status = await s.status();
    if (ok(status)) return { status, ms: Date.now() - t0 };
    if (Date.now() - t0 > timeoutMs) throw new Error(`the card did not get there in ${timeoutMs} ms: ${JSON.stringify({ boot: status.boot, scif: status.scif, cosm: status.cosm })}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A short RMA check against the card's agent (one guest command). */
export const RMA_CHECK = 'vphi-scif-rma aligned card-writeto card-readfrom --node 1';

export const cardOnline = (st: CardStatusView): boolean => st.boot.state === 'running' && st.scif.state === 'online';

/** One check of a scenario. */
export interface Check {
  name: string;
  ok: boolean;
  detail: string;
}

/** The result line of guest command `i` (init.sh: "ok I CMD" / "not ok I CMD"). */
const resultLine = (i: number, cmd: string) => new RegExp(`^(not )?ok ${i} ${cmd.split(' ')[0]}`);
const passedCount = (q: RunningQemu, i: number, cmd: string) => q.lines.filter((l) => resultLine(i, cmd).test(l) && !l.startsWith('not ')).length;

/**
 * `system_reset` on the QMP monitor with the card online: QEMU resets the
 * vfio-user device (VFIO_USER_DEVICE_RESET), the card must be back at
 * `ready` before the rebooted guest's mic_probe() looks at it, and the
 * guest boots it online again and passes RMA_CHECK. Leaves that guest
 * running (card online) for killWhileOnline.
 */
export async function resetViaMonitor(s: ServeProc, kernel: string, onLine?: (l: string) => void): Promise<{ checks: Check[]; q: RunningQemu; readyMs: number }> {
  const qmpPath = join(s.socketPath, '..', 'qmp.sock');
  const tests = ['mic-scif-boot', RMA_CHECK, 'sleep 3600'];
  const q = await startMicQemu({ kernel, socketPath: s.socketPath, tests, commandTimeoutS: 3600, timeoutMs: 900_000, qmpPath, onLine });
  const checks: Check[] = [];
  const check = (name: string, ok: boolean, detail = '') => checks.push({ name, ok, detail });
  try {
    await waitLines(q, /^# Subtest: sleep/, 1, 400_000);
    check('first-boot-online', passedCount(q, 1, tests[0]) === 1 && passedCount(q, 2, tests[1]) === 1, q.lines.filter((l) => /^(not )?ok \d/.test(l)).join('; '));
    const before = await s.status();
    check('online-before-reset', cardOnline(before), JSON.stringify(before.boot));
    const qmp = await Qmp.connect(qmpPath);
    const starts = q.lines.filter((l) => /VPHI-GUEST-START/.test(l)).length;
    await qmp.execute('system_reset');
    qmp.close();
    const { status, ms: readyMs } = await waitStatus(s, (st) => st.boot.state === 'ready', 30_000);
    const idle = cardIdle(status);
    check('ready-after-reset', idle === null, idle ?? `ready ${readyMs} ms after system_reset`);
    // The guest reboots: init.sh runs its commands again, mic-scif-boot first (ready-before).
    await waitLines(q, /VPHI-GUEST-START/, starts + 1, 120_000);
    await waitLines(q, /^# Subtest: sleep/, 2, 400_000);
    check('second-boot-online', passedCount(q, 1, tests[0]) === 2 && passedCount(q, 2, tests[1]) === 2, q.lines.filter((l) => /^(not )?ok \d/.test(l)).join('; '));
    const after = await s.status();
    check('online-after-reboot', cardOnline(after), JSON.stringify(after.boot));
    return { checks, q, readyMs };
  } catch (e) {
    q.kill();
    await q.exited;
    throw e;
  }
}

/**
 * QEMU SIGKILLed with the card online: the vfio-user connection drops,
 * the server resets the card (onConnection(false) -> X100Card.reset): boot
 * state ready, SCIF off, no DMA channel enabled; then a new QEMU boots it
 * online and passes RMA_CHECK. `q` is a guest with the card online, or one
 * is started.
 */
export async function killWhileOnline(s: ServeProc, kernel: string, q?: RunningQemu, onLine?: (l: string) => void): Promise<{ checks: Check[] }> {
  const checks: Check[] = [];
  const check = (name: string, ok: boolean, detail = '') => checks.push({ name, ok, detail });
  if (!q) {
    q = await startMicQemu({ kernel, socketPath: s.socketPath, tests: ['mic-scif-boot', 'sleep 3600'], commandTimeoutS: 3600, timeoutMs: 900_000, onLine });
    await waitLines(q, /^# Subtest: sleep/, 1, 400_000);
  }
  const before = await s.status();
  check('online-before-kill', cardOnline(before), JSON.stringify(before.boot));
  const { idle } = await killAndAwaitReset(s, q);
  check('reset-after-kill', idle === null, idle ?? '');
  check('server-alive', s.alive());
  const tests = ['mic-scif-boot', RMA_CHECK];
  const gone = s.detaches();
  const next = await startMicQemu({ kernel, socketPath: s.socketPath, tests, commandTimeoutS: 600, timeoutMs: 600_000, onLine });
  try {
    const m = await next.waitFor(/VPHI-GUEST-DONE rc=(\d+)/, 590_000);
    check('next-guest-online', m[1] === '0' && passedCount(next, 1, tests[0]) === 1 && passedCount(next, 2, tests[1]) === 1, next.lines.filter((l) => /^(not )?ok \d/.test(l)).join('; '));
  } finally {
    next.kill();
    await next.exited;
  }
  await s.until('the next guest detached', () => s.detaches() > gone, 30_000);
  return { checks };
}

/** SIGKILL `q`, wait until the server saw it detach and the card is `ready`: the card's status and why it is not idle (null: idle). */
export async function killAndAwaitReset(s: ServeProc, q: RunningQemu): Promise<{ status: CardStatusView; idle: string | null }> {
  const detached = s.detaches();
  q.kill();
  await q.exited;
  await s.until('client detached', () => s.detaches() > detached, 30_000);
  const { status } = await waitStatus(s, (st) => st.boot.state === 'ready', 10_000);
  return { status, idle: cardIdle(status) };
}
