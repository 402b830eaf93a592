/**
 * Run a QEMU guest as a child process and follow its serial console.
 *
 * Serial output (QEMU's stdout) is split into lines with `\r` stripped and
 * every line is kept; QEMU's own stderr is kept apart in `stderr`. QEMU is
 * killed at the timeout and whenever this Node process exits (and, through
 * `-run-with exit-with-parent=on`, even when Node is SIGKILLed).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { qemuArgs, qemuBinary, type GuestOptions } from './command.ts';

export interface RunOptions {
  /** Called for every serial line, as it arrives. */
  onLine?: (line: string) => void;
  /** Kill QEMU after this long (default: never). */
  timeoutMs?: number;
}

export interface QemuExit {
  code: number | null;
  signal: string | null;
}

export interface RunningQemu {
  proc: ChildProcess;
  /** Serial console lines so far (all of them). */
  lines: string[];
  /** QEMU's stderr lines so far. */
  stderr: string[];
  /** Settles when QEMU has exited (never rejects; a spawn failure is code null, signal null). */
  exited: Promise<QemuExit>;
  /** True once the timeout has fired. */
  readonly timedOut: boolean;
  /** SIGKILL QEMU (no-op once it has exited). */
  kill(): void;
  /** The first serial line, past or future, matching `re`; rejects on timeout or QEMU exit. */
  waitFor(re: RegExp, timeoutMs: number): Promise<RegExpMatchArray>;
}

/** Splits a byte stream into lines; `\r` dropped, a final partial line flushed at end. */
export class LineSplitter {
  private buf = '';
  constructor(private readonly emit: (line: string) => void) {}
  push(chunk: string): void {
    this.buf += chunk;
    let nl: number;
    while ((nl = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, nl).replace(/\r/g, '');
      this.buf = this.buf.slice(nl + 1);
      this.emit(line);
    }
  }
  end(): void {
    if (this.buf.length > 0) {
      const line = this.buf.replace(/\r/g, '');
      this.buf = '';
      if (line.length > 0) this.emit(line);
    }
  }
}

/** Spawn `qemuBinary()` with `qemuArgs(o)`. */
export function startQemu(o: GuestOptions, opts: RunOptions = {}): RunningQemu {
  const proc = spawn(qemuBinary(), qemuArgs(o), { stdio: ['pipe', 'pipe', 'pipe'] });
  const lines: string[] = [];
  const stderr: string[] = [];
  const waiters = new Set<(line: string | null) => void>();
  let done = false;
  let timedOut = false;
  let exitInfo: QemuExit | null = null;

  const onSerial = (line: string) => {
    lines.push(line);
    opts.onLine?.(line);
    for (const w of [...waiters]) w(line);
  };
  const out = new LineSplitter(onSerial);
  const err = new LineSplitter((l) => stderr.push(l));
  proc.stdout!.setEncoding('utf8');
  proc.stderr!.setEncoding('utf8');
  proc.stdout!.on('data', (c: string) => out.push(c));
  proc.stderr!.on('data', (c: string) => err.push(c));
  proc.stdin!.on('error', () => {}); // EPIPE after QEMU exits

  const kill = () => {
    if (!done && proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
  };
  const onProcessExit = () => kill();
  process.on('exit', onProcessExit);

  const timer = opts.timeoutMs !== undefined
    ? setTimeout(() => {
        timedOut = true;
        kill();
      }, opts.timeoutMs)
    : null;

  const exited = new Promise<QemuExit>((resolve) => {
    const finish = (info: QemuExit) => {
      if (done) return;
      done = true;
      exitInfo = info;
      if (timer) clearTimeout(timer);
      process.off('exit', onProcessExit);
      resolve(info);
    };
    proc.on('error', (e) => {
      stderr.push(`spawn ${qemuBinary()}: ${e.message}`);
      finish({ code: null, signal: null });
      for (const w of [...waiters]) w(null);
    });
    // 'close' comes after stdio has drained: every line is in by then.
    proc.on('close', (code, signal) => {
      out.end();
      err.end();
      finish({ code, signal });
      for (const w of [...waiters]) w(null);
    });
  });

  const waitFor = (re: RegExp, timeoutMs: number): Promise<RegExpMatchArray> => {
    for (const l of lines) {
      const m = l.match(re);
      if (m) return Promise.resolve(m);
    }
    if (done) return Promise.reject(new Error(`QEMU exited (${describeExit(exitInfo)}) before a line matched ${re}${tail(lines, stderr)}`));
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        waiters.delete(w);
        reject(new Error(`no line matched ${re} within ${timeoutMs} ms${tail(lines, stderr)}`));
      }, timeoutMs);
      const w = (line: string | null) => {
        if (line === null) {
          clearTimeout(t);
          waiters.delete(w);
          reject(new Error(`QEMU exited (${describeExit(exitInfo)}) before a line matched ${re}${tail(lines, stderr)}`));
          return;
        }
        const m = line.match(re);
        if (m) {
          clearTimeout(t);
          waiters.delete(w);
          resolve(m);
        }
      };
      waiters.add(w);
    });
  };

  return {
    proc,
    lines,
    stderr,
    exited,
    get timedOut() {
      return timedOut;
    },
    kill,
    waitFor,
  };
}

function describeExit(e: QemuExit | null): string {
  if (!e) return 'unknown';
  if (e.signal) return `signal ${e.signal}`;
  return e.code === null ? 'failed to start' : `code ${e.code}`;
}

function tail(lines: string[], stderr: string[]): string {
  const parts: string[] = [];
  if (stderr.length) parts.push(`QEMU stderr:\n  ${stderr.slice(-10).join('\n  ')}`);
  if (lines.length) parts.push(`last serial lines:\n  ${lines.slice(-15).join('\n  ')}`);
  return parts.length ? `\n${parts.join('\n')}` : '';
}
