/**
 * The protocol fuzzer's client: a raw vfio-user transport (in Python, which
 * can pass fds with socket.send_fds, as QEMU's hw/vfio-user does) that
 * sends exactly the bytes and fds it is given and reports what came back:
 * one reply, a close, or nothing within a timeout. The messages themselves
 * (well-formed or not) are built here in TypeScript, from a seed.
 * Also the card's server in a child process (fuzz-server.ts).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { onJsonLines } from './raw-client.ts';

/** vfio-user commands (libvfio-user's enum vfio_user_command). */
export const VFIO_USER = {
  VERSION: 1,
  DMA_MAP: 2,
  DMA_UNMAP: 3,
  DEVICE_GET_INFO: 4,
  DEVICE_GET_REGION_INFO: 5,
  DEVICE_GET_REGION_IO_FDS: 6,
  DEVICE_GET_IRQ_INFO: 7,
  DEVICE_SET_IRQS: 8,
  REGION_READ: 9,
  REGION_WRITE: 10,
  DMA_READ: 11,
  DMA_WRITE: 12,
  DEVICE_RESET: 13,
  DIRTY_PAGES: 14,
} as const;

/** struct vfio_user_header flags. */
export const VFIO_USER_F_TYPE_COMMAND = 0;
export const VFIO_USER_F_TYPE_REPLY = 1;
export const VFIO_USER_F_NO_REPLY = 0x10;
export const VFIO_USER_F_ERROR = 0x20;
export const HEADER_SIZE = 16;

/** include/uapi/linux/vfio.h VFIO_IRQ_SET_* */
export const VFIO_IRQ_SET = {
  DATA_NONE: 1 << 0,
  DATA_BOOL: 1 << 1,
  DATA_EVENTFD: 1 << 2,
  ACTION_MASK: 1 << 3,
  ACTION_UNMASK: 1 << 4,
  ACTION_TRIGGER: 1 << 5,
} as const;

/** What goes along as SCM_RIGHTS: an fd the transport makes for the message. */
export type FdSpec =
  | { kind: 'mem'; id: string } // a memfd made by mem()
  | { kind: 'memfd'; size: number } // a fresh memfd of that size
  | { kind: 'pipe' } // the read end of a pipe
  | { kind: 'pipewrite' } // the write end of a pipe whose read end the client keeps and never reads
  | { kind: 'eventfd' }
  | { kind: 'rofile' } // a read-only regular file
  | { kind: 'socket' } // one end of a socketpair
  | { kind: 'devnull' };

export type Outcome =
  | { kind: 'reply'; msgId: number; cmd: number; flags: number; error: number; body: Buffer; raw: Buffer }
  | { kind: 'closed' }
  | { kind: 'timeout' };

/** A struct vfio_user_header (msg_size defaults to the true size). */
export function header(msgId: number, cmd: number, bodyLen: number, o: { size?: number; flags?: number; error?: number } = {}): Buffer {
  const h = Buffer.alloc(HEADER_SIZE);
  h.writeUInt16LE(msgId & 0xffff, 0);
  h.writeUInt16LE(cmd & 0xffff, 2);
  h.writeUInt32LE((o.size ?? HEADER_SIZE + bodyLen) >>> 0, 4);
  h.writeUInt32LE((o.flags ?? VFIO_USER_F_TYPE_COMMAND) >>> 0, 8);
  h.writeUInt32LE((o.error ?? 0) >>> 0, 12);
  return h;
}

/** struct vfio_user_version: major, minor, then optional JSON capabilities (NUL-terminated). */
export function versionBody(major = 0, minor = 1, caps?: string): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt16LE(major, 0);
  b.writeUInt16LE(minor, 2);
  return caps === undefined ? b : Buffer.concat([b, Buffer.from(`${caps}\0`)]);
}

/** struct vfio_user_region_access: offset, region, count (+ data for a write). */
export function regionAccess(region: number, offset: bigint, count: number, data?: Buffer): Buffer {
  const a = Buffer.alloc(16);
  a.writeBigUInt64LE(BigInt.asUintN(64, offset), 0);
  a.writeUInt32LE(region >>> 0, 8);
  a.writeUInt32LE(count >>> 0, 12);
  return data ? Buffer.concat([a, data]) : a;
}

/** struct vfio_user_dma_map: argsz, flags, offset, addr, size. */
export function dmaMapBody(o: { argsz?: number; flags?: number; offset?: bigint; iova: bigint; size: bigint }): Buffer {
  const b = Buffer.alloc(32);
  b.writeUInt32LE((o.argsz ?? 32) >>> 0, 0);
  b.writeUInt32LE((o.flags ?? 3) >>> 0, 4);
  b.writeBigUInt64LE(BigInt.asUintN(64, o.offset ?? 0n), 8);
  b.writeBigUInt64LE(BigInt.asUintN(64, o.iova), 16);
  b.writeBigUInt64LE(BigInt.asUintN(64, o.size), 24);
  return b;
}

/** struct vfio_user_dma_unmap: argsz, flags, addr, size. */
export function dmaUnmapBody(o: { argsz?: number; flags?: number; iova: bigint; size: bigint }): Buffer {
  const b = Buffer.alloc(24);
  b.writeUInt32LE((o.argsz ?? 24) >>> 0, 0);
  b.writeUInt32LE((o.flags ?? 0) >>> 0, 4);
  b.writeBigUInt64LE(BigInt.asUintN(64, o.iova), 8);
  b.writeBigUInt64LE(BigInt.asUintN(64, o.size), 16);
  return b;
}

/** struct vfio_irq_set: argsz, flags, index, start, count (+ data). */
export function irqSetBody(o: { argsz?: number; flags: number; index: number; start: number; count: number; data?: Buffer }): Buffer {
  const b = Buffer.alloc(20);
  b.writeUInt32LE((o.argsz ?? 20 + (o.data?.length ?? 0)) >>> 0, 0);
  b.writeUInt32LE(o.flags >>> 0, 4);
  b.writeUInt32LE(o.index >>> 0, 8);
  b.writeUInt32LE(o.start >>> 0, 12);
  b.writeUInt32LE(o.count >>> 0, 16);
  return o.data ? Buffer.concat([b, o.data]) : b;
}

const TRANSPORT = String.raw`
import base64, json, os, select, socket, sys, tempfile, zlib
s = None
mems = {}
kept = []
def out(m):
    sys.stdout.write(json.dumps(m) + '\n')
    sys.stdout.flush()
def make_fd(spec, temps):
    k = spec['kind']
    if k == 'mem':
        return mems[spec['id']]
    if k == 'memfd':
        fd = os.memfd_create('vphi-fuzz-tmp')
        os.ftruncate(fd, spec['size'])
    elif k == 'pipe':
        r, w = os.pipe()
        temps.append(w)
        fd = r
    elif k == 'pipewrite':
        r, w = os.pipe()
        kept.append(r)
        fd = w
    elif k == 'eventfd':
        fd = os.eventfd(0, os.EFD_NONBLOCK)
    elif k == 'rofile':
        t = tempfile.TemporaryFile()
        t.write(b'\0' * 8192)
        t.flush()
        fd = os.open('/proc/self/fd/%d' % t.fileno(), os.O_RDONLY)
        t.close()
    elif k == 'socket':
        a, b = socket.socketpair()
        temps.append(b.detach())
        fd = a.detach()
    else:
        fd = os.open('/dev/null', os.O_RDWR)
    temps.append(fd)
    return fd
def recvn(n, deadline):
    b = b''
    while len(b) < n:
        left = deadline - now()
        if left <= 0:
            return None
        r, _, _ = select.select([s], [], [], left)
        if not r:
            return None
        c = s.recv(n - len(b))
        if not c:
            return b''
        b += c
    return b
def now():
    import time
    return time.monotonic()
def read_reply(timeout):
    deadline = now() + timeout
    h = recvn(16, deadline)
    if h is None:
        return {'kind': 'timeout'}
    if len(h) < 16:
        return {'kind': 'closed'}
    size = int.from_bytes(h[4:8], 'little')
    body = recvn(max(0, size - 16), deadline) if size > 16 else b''
    if body is None:
        return {'kind': 'timeout'}
    return {'kind': 'reply', 'raw': base64.b64encode(h + body).decode()}
for line in sys.stdin:
    m = json.loads(line)
    op = m['op']
    try:
        if op == 'connect':
            if s is not None:
                s.close()
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(m['path'])
            out({'ok': True})
        elif op == 'disconnect':
            if s is not None:
                s.close()
            s = None
            out({'ok': True})
        elif op == 'send':
            temps = []
            fds = [make_fd(f, temps) for f in m.get('fds', [])]
            data = base64.b64decode(m['data'])
            try:
                if fds:
                    socket.send_fds(s, [data], fds)
                else:
                    s.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                pass
            for fd in temps:
                os.close(fd)
            if m['expect'] == 'reply':
                out(read_reply(m['timeout']))
            else:
                # Nothing due: wait (briefly) for a close or an unexpected reply.
                out(read_reply(m['timeout']))
        elif op == 'mem':
            fd = os.memfd_create('vphi-fuzz-ram')
            os.ftruncate(fd, m['size'])
            mems[m['id']] = fd
            out({'ok': True})
        elif op == 'truncate':
            os.ftruncate(mems[m['id']], m['size'])
            out({'ok': True})
        elif op == 'poke':
            os.pwrite(mems[m['id']], base64.b64decode(m['data']), m['offset'])
            out({'ok': True})
        elif op == 'peek':
            out({'data': base64.b64encode(os.pread(mems[m['id']], m['len'], m['offset'])).decode()})
        elif op == 'crc':
            out({'crc': zlib.crc32(os.pread(mems[m['id']], m['len'], m['offset']))})
        else:
            out({'error': 'unknown op ' + op})
    except Exception as e:
        out({'error': '%s: %s' % (type(e).__name__, e)})
`;

export class FuzzClient {
  private waiting: ((m: Record<string, unknown>) => void)[] = [];
  private nextId = 1;
  /** Replies, closes and timeouts seen, by kind (for the test's summary). */
  readonly seen = { reply: 0, error: 0, closed: 0, timeout: 0, reconnects: 0 };

  private constructor(
    private readonly child: ChildProcess,
    readonly socketPath: string,
  ) {
    onJsonLines(child, (m) => this.waiting.shift()?.(m));
    child.on('exit', () => {
      for (const w of this.waiting.splice(0)) w({ error: 'transport exited' });
    });
  }

  static start(socketPath: string): FuzzClient {
    const child = spawn('python3', ['-c', TRANSPORT], { stdio: ['pipe', 'pipe', 'inherit'] });
    return new FuzzClient(child, socketPath);
  }

  private async op(m: Record<string, unknown>): Promise<Record<string, unknown>> {
    const p = new Promise<Record<string, unknown>>((resolve) => this.waiting.push(resolve));
    this.child.stdin!.write(`${JSON.stringify(m)}\n`);
    const r = await p;
    if (typeof r.error === 'string') throw new Error(`fuzz transport: ${r.error} (op ${String(m.op)})`);
    return r;
  }

  msgId(): number {
    this.nextId = (this.nextId + 1) & 0xffff;
    return this.nextId;
  }

  /** A new connection (nothing sent yet). */
  async connect(): Promise<void> {
    await this.op({ op: 'connect', path: this.socketPath });
  }

  async disconnect(): Promise<void> {
    await this.op({ op: 'disconnect' });
  }

  /** Sends `data` (with `fds`) and waits up to `timeoutMs` for one reply or a close. */
  async send(data: Buffer, o: { fds?: FdSpec[]; timeoutMs?: number; expectReply?: boolean } = {}): Promise<Outcome> {
    const r = await this.op({
      op: 'send',
      data: data.toString('base64'),
      fds: o.fds ?? [],
      expect: o.expectReply === false ? 'none' : 'reply',
      timeout: (o.timeoutMs ?? 5000) / 1000,
    });
    if (r.kind === 'closed') {
      this.seen.closed++;
      return { kind: 'closed' };
    }
    if (r.kind === 'timeout') {
      this.seen.timeout++;
      return { kind: 'timeout' };
    }
    const raw = Buffer.from(r.raw as string, 'base64');
    const flags = raw.readUInt32LE(8);
    const error = flags & VFIO_USER_F_ERROR ? raw.readUInt32LE(12) : 0;
    this.seen.reply++;
    if (flags & VFIO_USER_F_ERROR) this.seen.error++;
    return { kind: 'reply', msgId: raw.readUInt16LE(0), cmd: raw.readUInt16LE(2), flags, error, body: raw.subarray(16), raw };
  }

  /** A well-formed request; throws unless it gets a reply to it. */
  async request(cmd: number, body: Buffer, fds?: FdSpec[]): Promise<{ error: number; body: Buffer }> {
    const id = this.msgId();
    const o = await this.send(Buffer.concat([header(id, cmd, body.length), body]), { fds });
    if (o.kind !== 'reply') throw new Error(`command ${cmd}: ${o.kind} instead of a reply`);
    if (o.msgId !== id || o.cmd !== cmd) throw new Error(`command ${cmd} msg ${id}: reply to command ${o.cmd} msg ${o.msgId}`);
    return { error: o.error, body: o.body };
  }

  /** Connects and negotiates VERSION 0.1, retrying while the server still sees the previous connection (EBUSY). */
  async attach(): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      await this.connect();
      const id = this.msgId();
      const body = versionBody(0, 1, '{"capabilities":{"max_msg_fds":8,"max_data_xfer_size":1048576}}');
      const o = await this.send(Buffer.concat([header(id, VFIO_USER.VERSION, body.length), body]));
      if (o.kind === 'reply' && o.error === 0) return;
      if (attempt >= 50) throw new Error(`cannot attach: ${o.kind}${o.kind === 'reply' ? ` errno ${o.error}` : ''}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  async regionRead(region: number, offset: number, count: number): Promise<{ error: number; data: Buffer }> {
    const r = await this.request(VFIO_USER.REGION_READ, regionAccess(region, BigInt(offset), count));
    return { error: r.error, data: r.body.subarray(16) };
  }

  async regionWrite(region: number, offset: number, data: Buffer): Promise<number> {
    return (await this.request(VFIO_USER.REGION_WRITE, regionAccess(region, BigInt(offset), data.length, data))).error;
  }

  async read32(region: number, offset: number): Promise<number> {
    const r = await this.regionRead(region, offset, 4);
    if (r.error) throw new Error(`read of region ${region} at 0x${offset.toString(16)}: errno ${r.error}`);
    return r.data.readUInt32LE(0);
  }

  async write32(region: number, offset: number, v: number): Promise<void> {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v >>> 0, 0);
    const e = await this.regionWrite(region, offset, b);
    if (e) throw new Error(`write of region ${region} at 0x${offset.toString(16)}: errno ${e}`);
  }

  /** A memfd of the client's own, to hand over with { kind: 'mem', id }. */
  async mem(id: string, size: number): Promise<void> {
    await this.op({ op: 'mem', id, size });
  }

  async truncate(id: string, size: number): Promise<void> {
    await this.op({ op: 'truncate', id, size });
  }

  async poke(id: string, offset: number, data: Buffer): Promise<void> {
    await this.op({ op: 'poke', id, offset, data: data.toString('base64') });
  }

  async peek(id: string, offset: number, len: number): Promise<Buffer> {
    return Buffer.from((await this.op({ op: 'peek', id, offset, len })).data as string, 'base64');
  }

  /** zlib.crc32 of the client's memfd bytes. */
  async crc(id: string, offset: number, len: number): Promise<number> {
    return (await this.op({ op: 'crc', id, offset, len })).crc as number;
  }

  kill(): void {
    this.child.kill();
  }
}

const SERVER = fileURLToPath(new URL('./fuzz-server.ts', import.meta.url));
const ROOT = path.resolve(path.dirname(SERVER), '../..');

/** The card's server in its own process (fuzz-server.ts), with whatever env (LD_PRELOAD, ASAN_OPTIONS) is given. */
export class FuzzServer {
  stderr = '';
  exit: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  readonly exited: Promise<void>;
  private lines: Record<string, unknown>[] = [];
  private wake: (() => void) | null = null;

  private constructor(readonly proc: ChildProcess) {
    let buf = '';
    proc.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        this.lines.push(JSON.parse(buf.slice(0, i)) as Record<string, unknown>);
        buf = buf.slice(i + 1);
        this.wake?.();
      }
    });
    proc.stderr!.on('data', (d: Buffer) => {
      this.stderr += d.toString();
      if (this.stderr.length > 1 << 20) this.stderr = this.stderr.slice(-(1 << 19));
    });
    this.exited = new Promise((resolve) =>
      proc.on('exit', (code, signal) => {
        this.exit = { code, signal };
        this.wake?.();
        resolve();
      }),
    );
  }

  static async start(socketPath: string, env: NodeJS.ProcessEnv = process.env): Promise<FuzzServer> {
    const proc = spawn(process.execPath, ['--import', 'tsx', SERVER, socketPath], {
      cwd: ROOT,
      env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const s = new FuzzServer(proc);
    await s.waitFor((m) => m.up === true, 60_000);
    return s;
  }

  private async waitFor(cond: (m: Record<string, unknown>) => boolean, timeoutMs: number): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = this.lines.find(cond);
      if (m) return m;
      if (this.exit) throw new Error(`fuzz server exited (${JSON.stringify(this.exit)}):\n${this.stderr.slice(-4000)}`);
      if (Date.now() > deadline) throw new Error(`fuzz server: nothing within ${timeoutMs} ms:\n${this.stderr.slice(-4000)}`);
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        setTimeout(resolve, 100);
      });
    }
  }

  /** A sanitizer's or the runtime's report in stderr, if any. */
  finding(): string | undefined {
    const m = /(==\d+==ERROR: \w+Sanitizer[\s\S]*|\S+:\d+:\d+: runtime error:[\s\S]*|FATAL ERROR[\s\S]*|Segmentation fault[\s\S]*)/.exec(this.stderr);
    return m ? m[1].slice(0, 8000) : undefined;
  }

  /** Ends stdin; resolves with the exit once the server closed and exited (kills it after `timeoutMs`). */
  async stop(timeoutMs = 20_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    this.proc.stdin!.end();
    const t = setTimeout(() => this.proc.kill('SIGKILL'), timeoutMs);
    await this.exited;
    clearTimeout(t);
    return this.exit!;
  }
}
