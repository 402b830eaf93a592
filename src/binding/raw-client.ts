/**
 * Test helpers for bindings: the device options and callbacks the binding
 * tests share, and just enough of a vfio-user client (VERSION, region
 * access, DMA map/unmap without an fd, device reset) to speak to a native
 * context over its socket, as QEMU's hw/vfio-user does.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';

import type { ContextCallbacks, ContextOptions } from './types.ts';

/** include/uapi/linux/vfio.h VFIO_IRQ_SET_* */
export const VFIO_IRQ_SET_DATA_NONE = 1 << 0;
export const VFIO_IRQ_SET_ACTION_MASK = 1 << 3;
export const VFIO_IRQ_SET_ACTION_UNMASK = 1 << 4;

const MIB = 1024 * 1024;

/** A Xeon Phi-like function: memfd BAR0, trapped BAR4, MSI-X in BAR2 (not listed), PCIe, INTx. */
export function testOptions(socketPath: string): ContextOptions {
  return {
    socketPath,
    pci: {
      vendorId: 0x8086,
      deviceId: 0x2250,
      subsystemVendorId: 0x8086,
      subsystemId: 0x2500,
      revision: 0x11,
      classCode: 0x0b4000,
      interruptPin: 1,
    },
    regions: [
      { kind: 'memfd', index: 0, size: MIB, name: 'vphi-test-bar0' },
      { kind: 'trapped', index: 4, size: 128 * 1024 },
    ],
    barFlags: [
      { index: 0, is64: true, prefetchable: true },
      { index: 4, is64: true, prefetchable: false },
    ],
    // BAR2 is not listed: the binding declares it (trapped, 8 KiB).
    msix: { vectors: 16, bar: 2 },
    pcie: true,
    intx: true,
  };
}

export function quietCallbacks(overrides: Partial<ContextCallbacks> = {}): ContextCallbacks {
  return {
    onAccess() {},
    onDmaMap() {},
    onDmaUnmap() {},
    onReset() {},
    onIrqState() {},
    onConnection() {},
    onLog() {},
    onRefused() {},
    ...overrides,
  };
}

/** Polls `cond` (for state changed by callbacks that have no promise of their own). */
export async function until(cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > timeoutMs) throw new Error(`condition not met within ${timeoutMs} ms: ${cond}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

export interface Reply {
  error: number;
  body: Buffer;
  data: Buffer;
}

/**
 * Just enough of a vfio-user client to speak to the server directly. It runs
 * in a child process: the server reads the VERSION message with a blocking
 * recv() right after accept, so a client on the server's own event loop
 * could not send it in time.
 */
const RAW_CLIENT = `
const net = require('net');
let s;
let buf = Buffer.alloc(0);
process.on('message', (m) => {
  if (m.op === 'connect') {
    // The first message goes out at once, without waiting for the parent.
    s = net.connect(m.path, () => process.send({ type: 'connected' }));
    s.write(Buffer.from(m.first, 'base64'));
    s.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 16 && buf.length >= buf.readUInt32LE(4)) {
        const size = buf.readUInt32LE(4);
        process.send({ type: 'message', data: buf.subarray(0, size).toString('base64') });
        buf = buf.subarray(size);
      }
    });
    s.on('close', () => process.send({ type: 'closed' }));
    s.on('error', (e) => process.send({ type: 'error', data: e.code }));
  } else if (m.op === 'write') {
    s.write(Buffer.from(m.data, 'base64'));
  } else if (m.op === 'end') {
    s.end();
  }
});
`;

/** The vfio-user requests the tests send, over whichever transport request() has. */
abstract class VfioClient {
  abstract request(cmd: number, body: Buffer): Promise<Reply>;

  protected access(region: number, offset: number, count: number): Buffer {
    const a = Buffer.alloc(16);
    a.writeBigUInt64LE(BigInt(offset), 0);
    a.writeUInt32LE(region, 8);
    a.writeUInt32LE(count, 12);
    return a;
  }

  regionRead(region: number, offset: number, count: number): Promise<Reply> {
    return this.request(9, this.access(region, offset, count));
  }

  regionWrite(region: number, offset: number, data: Buffer): Promise<Reply> {
    return this.request(10, Buffer.concat([this.access(region, offset, data.length), data]));
  }

  /** VFIO_USER_DMA_MAP without an fd (struct vfio_user_dma_map: argsz, flags, offset, addr, size). */
  dmaMap(iova: bigint, size: number, prot = 3): Promise<Reply> {
    const b = Buffer.alloc(32);
    b.writeUInt32LE(32, 0);
    b.writeUInt32LE(prot, 4);
    b.writeBigUInt64LE(iova, 16);
    b.writeBigUInt64LE(BigInt(size), 24);
    return this.request(2, b);
  }

  /** VFIO_USER_DMA_UNMAP (struct vfio_user_dma_unmap: argsz, flags, addr, size). */
  dmaUnmap(iova: bigint, size: number): Promise<Reply> {
    const b = Buffer.alloc(24);
    b.writeUInt32LE(24, 0);
    b.writeBigUInt64LE(iova, 8);
    b.writeBigUInt64LE(BigInt(size), 16);
    return this.request(3, b);
  }

  /** VFIO_USER_DEVICE_SET_IRQS without fds (struct vfio_irq_set: argsz, flags, index, start, count). */
  setIrqs(flags: number, index: number, start: number, count: number): Promise<Reply> {
    const b = Buffer.alloc(20);
    b.writeUInt32LE(20, 0);
    b.writeUInt32LE(flags, 4);
    b.writeUInt32LE(index, 8);
    b.writeUInt32LE(start, 12);
    b.writeUInt32LE(count, 16);
    return this.request(8, b);
  }

  /** VFIO_USER_DEVICE_RESET. */
  reset(): Promise<Reply> {
    return this.request(13, Buffer.alloc(0));
  }
}

export class RawClient extends VfioClient {
  private waiting: ((m: { type: string; data?: string }) => void)[] = [];
  private nextId = 1;

  private constructor(private readonly child: ChildProcess) {
    super();
    child.on('message', (m: { type: string; data?: string }) => this.waiting.shift()?.(m));
  }

  /** Connects and negotiates (VERSION 0.1); resolves with the version reply. */
  static async connect(socketPath: string): Promise<{ client: RawClient; version: Reply }> {
    const child = spawn(process.execPath, ['-e', RAW_CLIENT], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const c = new RawClient(child);
    const connected = c.next(() => {});
    const reply = c.reply(c.next(() => {}));
    child.send({ op: 'connect', path: socketPath, first: c.message(1, Buffer.from([0, 0, 1, 0])).toString('base64') });
    if ((await connected).type !== 'connected') throw new Error('raw client: cannot connect');
    return { client: c, version: await reply };
  }

  private message(cmd: number, body: Buffer, noReply = false): Buffer {
    const hdr = Buffer.alloc(16);
    hdr.writeUInt16LE(this.nextId++, 0);
    hdr.writeUInt16LE(cmd, 2);
    hdr.writeUInt32LE(16 + body.length, 4);
    if (noReply) hdr.writeUInt32LE(0x10, 8); // VFIO_USER_F_NO_REPLY
    return Buffer.concat([hdr, body]);
  }

  private async reply(next: Promise<{ type: string; data?: string }>): Promise<Reply> {
    const m = await next;
    if (m.type !== 'message') throw new Error(`raw client: ${m.type} instead of a reply`);
    const msg = Buffer.from(m.data!, 'base64');
    const error = msg.readUInt32LE(8) & 0x20 ? msg.readUInt32LE(12) : 0;
    const body = msg.subarray(16);
    return { error, body, data: body.subarray(16) };
  }

  private next(send: () => void): Promise<{ type: string; data?: string }> {
    return new Promise((resolve) => {
      this.waiting.push(resolve);
      send();
    });
  }

  request(cmd: number, body: Buffer): Promise<Reply> {
    const data = this.message(cmd, body).toString('base64');
    return this.reply(this.next(() => this.child.send({ op: 'write', data })));
  }

  /** A request sent with VFIO_USER_F_NO_REPLY (a posted write, as QEMU's). */
  post(cmd: number, body: Buffer): void {
    this.child.send({ op: 'write', data: this.message(cmd, body, true).toString('base64') });
  }

  /**
   * Resolves when the connection ends: 'end' when the client read the end
   * of the stream, else the error its socket got (ECONNRESET). Call it
   * before whatever ends the connection.
   */
  async ended(): Promise<string> {
    let error: string | undefined;
    for (;;) {
      const m = await this.next(() => {});
      if (m.type === 'error') error = m.data;
      if (m.type === 'closed') return error ?? 'end';
    }
  }

  /** Closes the connection; resolves once the socket is closed. */
  async end(): Promise<void> {
    await this.next(() => this.child.send({ op: 'end' }));
    this.kill();
  }

  kill(): void {
    this.child.kill();
  }
}

/**
 * The same client in Python, which can pass fds (socket.send_fds): eventfds
 * with VFIO_USER_DEVICE_SET_IRQS and a memfd with VFIO_USER_DMA_MAP, as
 * QEMU's vfio_user_set_irqs() and vfio_user_dma_map() do. One JSON line
 * per request on stdin, one per answer on stdout.
 */
const FD_CLIENT = String.raw`
import base64, json, os, socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
msg_id = 0
efds = {}
mems = {}
def out(m):
    sys.stdout.write(json.dumps(m) + '\n')
    sys.stdout.flush()
def recvn(n):
    b = b''
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise EOFError
        b += c
    return b
def send(cmd, body, fds=()):
    global msg_id
    msg_id += 1
    msg = struct.pack('<HHIII', msg_id, cmd, 16 + len(body), 0, 0) + body
    if fds:
        socket.send_fds(s, [msg], list(fds))
    else:
        s.sendall(msg)
    _, _, size, flags, err = struct.unpack('<HHIII', recvn(16))
    return (err if flags & 0x20 else 0), recvn(size - 16)
err, _ = send(1, struct.pack('<HH', 0, 1))
out({'error': err})
while True:
    line = sys.stdin.readline()
    if not line:
        break
    m = json.loads(line)
    op = m['op']
    if op == 'request':
        err, body = send(m['cmd'], base64.b64decode(m['body']))
        out({'error': err, 'body': base64.b64encode(body).decode()})
    elif op == 'eventfd':
        fd = os.eventfd(0, os.EFD_NONBLOCK)
        err, _ = send(8, struct.pack('<IIIII', 20, (1 << 2) | (1 << 5), m['index'], m['start'], 1), [fd])
        efds[(m['index'], m['start'])] = fd
        out({'error': err})
    elif op == 'eventfd_read':
        try:
            n = os.eventfd_read(efds[(m['index'], m['start'])])
        except (BlockingIOError, KeyError):
            n = 0
        out({'count': n})
    elif op == 'dma_map':
        data = base64.b64decode(m['data'])
        fd = os.memfd_create('vphi-contract-ram')
        os.ftruncate(fd, len(data))
        os.pwrite(fd, data, 0)
        err, _ = send(2, struct.pack('<IIQQQ', 32, 3, 0, m['iova'], len(data)), [fd])
        mems[m['iova']] = fd
        out({'error': err})
    elif op == 'peek':
        out({'data': base64.b64encode(os.pread(mems[m['iova']], m['len'], m['offset'])).decode()})
    elif op == 'end':
        s.close()
        out({'closed': True})
        break
`;

/** True when python3 can pass fds (3.10+: os.eventfd, socket.send_fds). */
export function fdClientAvailable(): boolean {
  const r = spawnSync('python3', ['-c', 'import os, socket; os.eventfd; socket.send_fds'], { stdio: 'ignore' });
  return r.status === 0;
}

export class FdClient extends VfioClient {
  private waiting: ((m: Record<string, unknown>) => void)[] = [];

  private constructor(private readonly child: ChildProcess) {
    super();
    onJsonLines(child, (m) => this.waiting.shift()?.(m));
    child.on('exit', () => {
      for (const w of this.waiting.splice(0)) w({ error: -1, exited: true });
    });
  }

  /** Connects and negotiates (VERSION 0.1); resolves with the VERSION errno. */
  static async connect(socketPath: string): Promise<{ client: FdClient; error: number }> {
    const child = spawn('python3', ['-c', FD_CLIENT, socketPath], { stdio: ['pipe', 'pipe', 'inherit'] });
    const c = new FdClient(child);
    const m = await c.next();
    return { client: c, error: m.error as number };
  }

  private next(): Promise<Record<string, unknown>> {
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  private op(m: Record<string, unknown>): Promise<Record<string, unknown>> {
    const p = this.next();
    this.child.stdin!.write(`${JSON.stringify(m, (_k, v) => (typeof v === 'bigint' ? Number(v) : v))}\n`);
    return p;
  }

  async request(cmd: number, body: Buffer): Promise<Reply> {
    const m = await this.op({ op: 'request', cmd, body: body.toString('base64') });
    const b = Buffer.from((m.body as string | undefined) ?? '', 'base64');
    return { error: m.error as number, body: b, data: b.subarray(16) };
  }

  /** VFIO_USER_DEVICE_SET_IRQS, ACTION_TRIGGER with one new eventfd at `start` of `index`. */
  async giveEventfd(index: number, start: number): Promise<number> {
    return (await this.op({ op: 'eventfd', index, start })).error as number;
  }

  /** Reads (and so clears) the counter of the eventfd at `start` of `index`: how often it was written. */
  async eventfdCount(index: number, start: number): Promise<number> {
    return (await this.op({ op: 'eventfd_read', index, start })).count as number;
  }

  /** VFIO_USER_DMA_MAP of a new memfd holding `data`. */
  async dmaMapMemory(iova: bigint, data: Uint8Array): Promise<number> {
    return (await this.op({ op: 'dma_map', iova, data: Buffer.from(data).toString('base64') })).error as number;
  }

  /** What the client's memory of DMA region `iova` holds at `offset`. */
  async peek(iova: bigint, offset: number, len: number): Promise<Buffer> {
    return Buffer.from((await this.op({ op: 'peek', iova, offset, len })).data as string, 'base64');
  }

  async end(): Promise<void> {
    await this.op({ op: 'end' });
  }

  kill(): void {
    this.child.kill();
  }
}

/** `fn` for each JSON line a child process writes to stdout (the Python fd helpers' replies). */
export function onJsonLines(child: ChildProcess, fn: (m: Record<string, unknown>) => void): void {
  let buf = '';
  child.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const m = JSON.parse(buf.slice(0, i)) as Record<string, unknown>;
      buf = buf.slice(i + 1);
      fn(m);
    }
  });
}
