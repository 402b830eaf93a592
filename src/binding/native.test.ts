/**
 * What only the native binding shows (the contract, contract.ts, runs
 * against it in contract.test.ts): real sockets and memfds, process exit,
 * and real QEMU (vfio-user-pci, TCG) with a tiny busybox initramfs built
 * here, which hands over eventfds and fd-backed guest RAM. Skipped, with the reason in the suite name,
 * when the addon is not built or QEMU/guest files are missing.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { ADDON_PATH, loadNativeBinding, nativeAvailable, nativeLoadError } from './native.ts';
import { RawClient, quietCallbacks, testOptions, until } from './raw-client.ts';
import {
  type DmaRegionInfo,
  IRQ_TYPE,
  type NativeContext,
  RESET_TYPE,
} from './types.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const QEMU = path.join(ROOT, '.cache/qemu/bin/qemu-system-x86_64');
const KERNEL = path.join(ROOT, '.cache/guest/vmlinuz');
const BUSYBOX = path.join(ROOT, '.cache/guest/busybox');

const missingGuest = [QEMU, KERNEL, BUSYBOX].filter((f) => !fs.existsSync(f));
const nativeSkip = nativeAvailable() ? undefined : nativeLoadError();
const qemuSkip = nativeSkip ?? (missingGuest.length ? `missing ${missingGuest.join(', ')}` : undefined);

const GUEST_RAM = 256 * 1024 * 1024;
const { EINVAL, ENOENT } = os.constants.errno;
const MIB = 1024 * 1024;

function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'vphi-native-'));
}

const options = testOptions;

describe.skipIf(nativeSkip !== undefined)(
  `native binding${nativeSkip ? ` (skipped: ${nativeSkip})` : ''}`,
  () => {
    const binding = nativeSkip ? undefined : loadNativeBinding();
    let dir: string;
    beforeAll(() => {
      dir = tmpDir();
    });
    afterAll(() => {
      fs.rmSync(dir, { recursive: true, force: true });
    });

    // Everything seen through the Binding interface is in contract.ts; here
    // is what only a real socket and memfd show.
    it('creates the socket 0600 in a 0700 directory, shares the memfd, and removes the socket on close', () => {
      const socketPath = path.join(dir, 'fresh', 'sub', 'vphi.sock');
      const ctx = binding!.createContext(options(socketPath), quietCallbacks());
      try {
        expect(fs.statSync(path.dirname(socketPath)).mode & 0o777).toBe(0o700);
        const st = fs.statSync(socketPath);
        expect(st.isSocket()).toBe(true);
        expect(st.mode & 0o777).toBe(0o600);

        // memfd: our Buffer, the fd and QEMU's future mapping are one memory.
        const mem = ctx.regionMemory(0);
        mem.writeUInt32LE(0xdeadbeef, 64);
        const fd = ctx.regionFd(0);
        expect(fs.fstatSync(fd).size).toBe(MIB);
        const b = Buffer.alloc(4);
        fs.readSync(fd, b, 0, 4, 64);
        expect(b.readUInt32LE(0)).toBe(0xdeadbeef);
      } finally {
        ctx.close();
      }
      expect(fs.existsSync(socketPath)).toBe(false);
    });

    it('dropResidentPages() gives the memfd BAR\'s pages back: RssShmem falls by what was touched', () => {
      const rssShmemKiB = () => Number(/^RssShmem:\s+(\d+) kB/m.exec(fs.readFileSync('/proc/self/status', 'utf8'))?.[1]);
      const ctx = binding!.createContext(options(path.join(dir, 'drop', 'vphi.sock')), quietCallbacks());
      try {
        const mem = ctx.regionMemory(0);
        const before = rssShmemKiB();
        mem.fill(0x3c); // touches all 1 MiB
        const touched = rssShmemKiB();
        expect(touched - before).toBeGreaterThanOrEqual(1000);
        ctx.dropResidentPages();
        expect(touched - rssShmemKiB()).toBeGreaterThanOrEqual(1000);
        expect(mem.every((b) => b === 0x3c)).toBe(true); // the memfd kept it
      } finally {
        ctx.close();
      }
    });

    it('drops a client that connects and never sends its VERSION', async () => {
      const socketPath = path.join(dir, 'raw', 'vphi.sock');
      const connections: boolean[] = [];
      const logs: { level: number; message: string }[] = [];
      const ctx = binding!.createContext(
        options(socketPath),
        quietCallbacks({ onConnection: (a) => connections.push(a), onLog: (level, message) => logs.push({ level, message }) }),
      );
      try {
        const silent = net.connect(socketPath);
        await new Promise<void>((resolve) => silent.on('close', () => resolve()).resume());
        expect(connections).toEqual([]);
        expect(logs.some((l) => l.level === 3 && /did not send its vfio-user version within \d+ ms; dropped/.test(l.message))).toBe(true);

        // And the next client is served.
        const { client, version } = await RawClient.connect(socketPath);
        try {
          expect(version.error).toBe(0);
          await until(() => connections.length === 1);
          expect(connections).toEqual([true]);
        } finally {
          client.kill();
        }
      } finally {
        ctx.close();
      }
    }, 20_000);

    it('DMA regions without an fd are kept beside libvfio-user\'s 16: overlaps refused, re-map accepted, UNMAP_ALL and going away drop them', async () => {
      const socketPath = path.join(dir, 'fdless', 'vphi.sock');
      const events: string[] = [];
      const ctx = binding!.createContext(options(socketPath), quietCallbacks({
        onDmaMap: (i) => events.push(`map ${i.iova.toString(16)}`),
        onDmaUnmap: (iova) => events.push(`unmap ${iova.toString(16)}`),
        onReset: (t) => events.push(`reset ${t}`),
      }));
      try {
        const { client } = await RawClient.connect(socketPath);
        try {
          const at = (k: number) => 0x80_0000_0000n + BigInt(k) * 0x4_0000_0000n;
          for (let k = 0; k < 20; k++) expect((await client.dmaMap(at(k), 0x2000_0000)).error).toBe(0);
          expect(events.filter((e) => e.startsWith('map')).length).toBe(20);
          expect((await client.dmaMap(at(3), 0x2000_0000)).error).toBe(0); // identical: accepted, not reported again
          expect((await client.dmaMap(at(3), 0x2000_0000, 1)).error).toBe(EINVAL); // other prot
          expect((await client.dmaMap(at(3) + 0x1000n, 0x1000)).error).toBe(EINVAL); // inside one
          expect((await client.dmaMap(at(3) - 0x1000n, 0x2000)).error).toBe(EINVAL); // straddling its start
          expect(events.length).toBe(20);
          const unmap = await client.dmaUnmap(at(5), 0x2000_0000);
          expect(unmap.error).toBe(0);
          expect(unmap.body.length).toBe(24); // the request echoed, as handle_dma_unmap() replies
          expect(events.at(-1)).toBe(`unmap ${at(5).toString(16)}`);
          expect((await client.dmaUnmap(at(5), 0x2000_0000)).error).toBe(ENOENT);
          expect((await client.dmaUnmap(at(6), 0x1000)).error).toBe(ENOENT); // not exact
          // VFIO_DMA_UNMAP_FLAG_ALL drops them all (and libvfio-user's none).
          const all = Buffer.alloc(24);
          all.writeUInt32LE(24, 0);
          all.writeUInt32LE(2, 4);
          expect((await client.request(3, all)).error).toBe(0);
          expect(events.filter((e) => e.startsWith('unmap')).length).toBe(20);
          for (let k = 0; k < 3; k++) expect((await client.dmaMap(at(k), 0x1000)).error).toBe(0);
          events.length = 0;
        } finally {
          client.kill();
        }
        await until(() => events.some((e) => e.startsWith('reset')));
        // Going away: every region unmapped before the LOST_CONN reset, as libvfio-user's own.
        expect(events).toEqual([...[0, 1, 2].map((k) => `unmap ${(0x80_0000_0000n + BigInt(k) * 0x4_0000_0000n).toString(16)}`), `reset ${RESET_TYPE.LOST_CONN}`]);
      } finally {
        ctx.close();
      }
    }, 20_000);

    it('closing with a client\'s requests unread: the client reads the end of the stream, not ECONNRESET (on which QEMU 11.1 aborts)', async () => {
      const socketPath = path.join(dir, 'eof', 'vphi.sock');
      const ctx = binding!.createContext(options(socketPath), quietCallbacks());
      const { client } = await RawClient.connect(socketPath);
      try {
        const ended = client.ended();
        const write = Buffer.alloc(20);
        write.writeUInt32LE(4, 0); // BAR4, offset 0x100, 4 bytes
        write.writeBigUInt64LE(0x100n, 8);
        write.writeUInt32LE(4, 16);
        for (let i = 0; i < 64; i++) client.post(10, Buffer.concat([write, Buffer.alloc(4)]));
        // The loop is blocked meanwhile: the posted writes wait in the socket, unread.
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 300);
        ctx.close();
        expect(await ended).toBe('end');
      } finally {
        client.kill();
        ctx.close();
      }
    }, 20_000);

    it('keeps the upper half of a 64-bit BAR as the client wrote it (libvfio-user drops it)', async () => {
      const socketPath = path.join(dir, 'bar64', 'vphi.sock');
      const ctx = binding!.createContext(options(socketPath), quietCallbacks());
      try {
        const { client } = await RawClient.connect(socketPath);
        try {
          const REGION_CONFIG = 7;
          // BAR0 is 64-bit (testOptions): lower dword, upper dword as QEMU writes them, then both in one 8-byte write.
          expect((await client.regionWrite(REGION_CONFIG, 0x10, Buffer.from([0, 0, 0, 0xa0]))).error).toBe(0);
          expect((await client.regionWrite(REGION_CONFIG, 0x14, Buffer.from([0xff, 0, 0, 0]))).error).toBe(0);
          expect(ctx.readConfig(0x10, 4) & ~0xf).toBe(0xa0000000 | 0);
          expect(ctx.readConfig(0x14, 4)).toBe(0xff);
          const both = Buffer.alloc(8);
          both.writeBigUInt64LE(0x12_8000_0000n);
          expect((await client.regionWrite(REGION_CONFIG, 0x10, both)).error).toBe(0);
          expect(ctx.readConfig(0x14, 4)).toBe(0x12);
        } finally {
          client.kill();
        }
      } finally {
        ctx.close();
      }
    }, 20_000);

    it('lets the process exit after close(), and cleans up when a worker ends', async () => {
      // A plain script against the raw addon: the same calls as native.ts.
      const script = (socketPath: string, body: string) => `
        const addon = require(${JSON.stringify(ADDON_PATH)});
        const f = () => {};
        const ctx = new addon.Context({
          socketPath: ${JSON.stringify(socketPath)},
          pci: { vendorId: 0x8086, deviceId: 0x2250, subsystemVendorId: 0, subsystemId: 0, revision: 0, classCode: 0, interruptPin: 0 },
          regions: [{ kind: 'memfd', index: 0, size: 65536, name: 'exit-test' }],
          barFlags: [], msix: { vectors: 4, bar: 2 }, pcie: false, intx: false,
        }, { onAccess: f, onDmaMap: f, onDmaUnmap: f, onReset: f, onIrqState: f, onConnection: f, onLog: f, onRefused: f });
        ${body}`;
      const run = (code: string) =>
        new Promise<{ code: number | null; out: string }>((resolve) => {
          const child = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
          let out = '';
          child.stdout.on('data', (d) => (out += d));
          const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
          child.on('exit', (c) => {
            clearTimeout(timer);
            resolve({ code: c, out });
          });
        });

      // After close() nothing keeps the loop alive: the script just ends.
      const closed = path.join(dir, 'exit', 'vphi.sock');
      const r1 = await run(script(closed, `ctx.regionMemory(0); ctx.close(); console.log('closed');`));
      expect(r1).toEqual({ code: 0, out: 'closed\n' });
      expect(fs.existsSync(closed)).toBe(false);

      // A worker that ends with an open context: the cleanup hook closes it.
      const inWorker = path.join(dir, 'worker', 'vphi.sock');
      const r2 = await run(`
        const { Worker } = require('node:worker_threads');
        const w = new Worker(${JSON.stringify(script(inWorker, `require('node:worker_threads').parentPort.postMessage('up');`))}, { eval: true });
        w.on('message', async () => {
          const exists = require('fs').existsSync(${JSON.stringify(inWorker)});
          await w.terminate();
          console.log(exists, require('fs').existsSync(${JSON.stringify(inWorker)}));
        });`);
      expect(r2).toEqual({ code: 0, out: 'true false\n' });
    }, 30_000);

    it('serves on an inherited listening socket (listenFd)', async () => {
      // The parent binds and listens; the server process gets the socket as fd 3.
      const bound = path.join(dir, 'inherit', 'bound.sock');
      const moved = path.join(dir, 'inherit', 'vphi.sock');
      fs.mkdirSync(path.dirname(bound), { recursive: true });
      const server = net.createServer();
      await new Promise<void>((resolve) => server.listen(bound, resolve));
      const fd = (server as unknown as { _handle: { fd: number } })._handle.fd;
      const child = spawn(
        process.execPath,
        [
          '-e',
          `
          const addon = require(${JSON.stringify(ADDON_PATH)});
          const say = (m) => process.stdout.write(JSON.stringify(m) + '\\n');
          const f = () => {};
          const ctx = new addon.Context({
            socketPath: '', listenFd: 3,
            pci: { vendorId: 0x8086, deviceId: 0x2250, subsystemVendorId: 0, subsystemId: 0, revision: 0, classCode: 0, interruptPin: 0 },
            regions: [], barFlags: [], msix: { vectors: 4, bar: 2 }, pcie: false, intx: false,
          }, { onAccess: f, onDmaMap: f, onDmaUnmap: f, onReset: f, onIrqState: f, onLog: f,
               onConnection: (a) => say({ connection: a }), onRefused: (r) => say({ refused: r }),
               onPoll: () => say({ poll: true }) });
          say({ up: true });
          process.stdin.on('end', () => { ctx.close(); say({ closed: true }); });
          process.stdin.resume();`,
        ],
        { stdio: ['pipe', 'pipe', 'inherit', fd] },
      );
      const events: Record<string, unknown>[] = [];
      let buf = '';
      child.stdout!.on('data', (d: Buffer) => {
        buf += d.toString();
        let i: number;
        while ((i = buf.indexOf('\n')) >= 0) {
          events.push(JSON.parse(buf.slice(0, i)));
          buf = buf.slice(i + 1);
        }
      });
      const exited = new Promise((resolve) => child.on('exit', resolve));
      const clients: RawClient[] = [];
      try {
        await until(() => events.some((e) => e.up));
        // Our copy must stop listening without unlinking the socket file
        // (libuv removes the path it bound): move the file away first.
        fs.renameSync(bound, moved);
        await new Promise<void>((resolve) => server.close(() => resolve()));
        expect(fs.statSync(moved).isSocket()).toBe(true);

        const { client, version } = await RawClient.connect(moved);
        clients.push(client);
        expect(version.error).toBe(0);
        await until(() => events.some((e) => e.connection === true));
        expect((await client.regionRead(7, 0, 4)).data.readUInt32LE(0)).toBe(0x22508086);
        await until(() => events.some((e) => e.poll)); // after a batch of requests

        // A second client is refused, naming the socket's bound path.
        const second = net.connect(moved);
        second.resume();
        await new Promise((resolve) => second.on('close', resolve));
        expect(events).toContainEqual({ refused: `a client is already attached to ${bound}` });

        await client.end();
        await until(() => events.some((e) => e.connection === false));
        child.stdin!.end();
        await until(() => events.some((e) => e.closed));
        expect(await exited).toBe(0);
        // The path belongs to whoever bound it: the server leaves it alone.
        expect(fs.existsSync(moved)).toBe(true);
      } finally {
        for (const c of clients) c.kill();
        child.kill();
        if (server.listening) server.close();
      }

      // Something that is not a listening socket is refused (and stays the caller's).
      const fileFd = fs.openSync(path.join(dir, 'inherit', 'not-a-socket'), 'w');
      try {
        expect(() =>
          binding!.createContext({ ...options(path.join(dir, 'unused.sock')), listenFd: fileFd }, quietCallbacks()),
        ).toThrow(`listenFd ${fileFd} is not a socket`);
        expect(fs.fstatSync(fileFd).isFile()).toBe(true);
      } finally {
        fs.closeSync(fileFd);
      }
    }, 30_000);

    it('refuses a live socket, a non-socket, and replaces a stale socket', async () => {
      const stale = path.join(dir, 'stale', 'vphi.sock');
      fs.mkdirSync(path.dirname(stale), { recursive: true });
      // A server that dies without cleaning up leaves its socket file behind.
      await new Promise<void>((resolve) => {
        const child = spawn(process.execPath, [
          '-e',
          `require('net').createServer().listen(${JSON.stringify(stale)}, () => process.kill(process.pid, 'SIGKILL'))`,
        ]);
        child.on('exit', () => resolve());
      });
      expect(fs.statSync(stale).isSocket()).toBe(true);
      const ctx = binding!.createContext(options(stale), quietCallbacks());
      expect(fs.statSync(stale).isSocket()).toBe(true);

      // Now it is live (our own context listens on it).
      expect(() => binding!.createContext(options(stale), quietCallbacks())).toThrow(
        `socket ${stale} is in use by a live server`,
      );
      ctx.close();

      const live = path.join(dir, 'live.sock');
      const server = net.createServer();
      await new Promise<void>((resolve) => server.listen(live, resolve));
      try {
        expect(() => binding!.createContext(options(live), quietCallbacks())).toThrow(
          `socket ${live} is in use by a live server`,
        );
      } finally {
        await new Promise<void>((resolve) => server.close(() => resolve()));
      }

      const file = path.join(dir, 'plain-file');
      fs.writeFileSync(file, 'not a socket');
      expect(() => binding!.createContext(options(file), quietCallbacks())).toThrow(/not a socket/);
      expect(fs.readFileSync(file, 'utf8')).toBe('not a socket');
    });
  },
);

// ---------------------------------------------------------------- with QEMU

/** The guest's /init: report the device, touch its BARs, maybe enable MSI-X. */
const INIT = `#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
arg() { sed -n "s/.* $1=\\([^ ]*\\).*/\\1/p" /proc/cmdline; }
echo VPHI-GUEST-UP
for d in /sys/bus/pci/devices/*; do
  [ "$(cat $d/vendor)" = "0x8086" ] && [ "$(cat $d/device)" = "0x2250" ] || continue
  echo "VPHI-DEV $(cat $d/class)"
  i=0
  while read start end flags; do
    [ $i -lt 6 ] && echo "VPHI-RES $i $start $flags"
    i=$((i+1))
  done < $d/resource
  echo 1 > $d/enable
  bar0=$(sed -n 1p $d/resource | cut -d' ' -f1)
  bar2=$(sed -n 3p $d/resource | cut -d' ' -f1)
  bar4=$(sed -n 5p $d/resource | cut -d' ' -f1)
  echo "VPHI-BAR4 $(devmem $bar4 32)"
  echo "VPHI-BAR4-THROWS $(devmem $((bar4 + 16)) 32)"
  echo "VPHI-BAR0 $(devmem $((bar0 + 4)) 32)"
  # vphi_writes: posted BAR4 writes without end, in the background.
  [ -n "$(arg vphi_writes)" ] && (while :; do devmem $((bar4 + 0x100)) 32 0x5a; done) &
  w=$(arg vphi_bar0w)
  [ -n "$w" ] && devmem $((bar0 + 4)) 32 $w
  m=$(arg vphi_msix)
  if [ -n "$m" ]; then
    printf '\\200' | dd of=$d/config bs=1 seek=$((m + 3)) conv=notrunc 2>/dev/null
    devmem $bar2 32 0xfee00000
    devmem $((bar2 + 4)) 32 0
    devmem $((bar2 + 8)) 32 0x31
    devmem $((bar2 + 12)) 32 0
    echo "VPHI-MSIX $(devmem $((bar2 + 12)) 32)"
  fi
done
echo VPHI-GUEST-READY
s=$(arg vphi_sleep)
[ -n "$s" ] && sleep $s
poweroff -f
`;

/** A newc cpio archive (what the kernel unpacks as initramfs). */
function cpio(entries: { name: string; mode: number; data?: Buffer }[]): Buffer {
  const parts: Buffer[] = [];
  const pad = (n: number) => Buffer.alloc((4 - (n % 4)) % 4);
  let ino = 1;
  for (const e of [...entries, { name: 'TRAILER!!!', mode: 0 }]) {
    const data = 'data' in e && e.data ? e.data : Buffer.alloc(0);
    const name = Buffer.from(`${e.name}\0`);
    const fields = [ino++, e.mode, 0, 0, 1, 0, data.length, 0, 0, 0, 0, name.length, 0];
    const header = Buffer.from(`070701${fields.map((f) => f.toString(16).padStart(8, '0')).join('')}`);
    parts.push(header, name, pad(header.length + name.length), data, pad(data.length));
  }
  return Buffer.concat(parts);
}

function buildInitrd(file: string): void {
  fs.writeFileSync(
    file,
    cpio([
      { name: 'bin', mode: 0o40755 },
      { name: 'proc', mode: 0o40755 },
      { name: 'sys', mode: 0o40755 },
      { name: 'dev', mode: 0o40755 },
      { name: 'bin/busybox', mode: 0o100755, data: fs.readFileSync(BUSYBOX) },
      { name: 'init', mode: 0o100755, data: Buffer.from(INIT) },
    ]),
  );
}

interface Qemu {
  proc: ChildProcess;
  lines: string[];
  stderr: string;
  exited: Promise<number | null>;
}

/** Everything the callbacks saw, and a way to wait for a condition on it. */
class Recorder extends EventEmitter {
  logs: { level: number; message: string }[] = [];
  accesses: { index: number; offset: number; len: number; isWrite: boolean }[] = [];
  maps: DmaRegionInfo[] = [];
  /** Regions mapped and not yet unmapped. */
  live = new Set<DmaRegionInfo>();
  unmaps: { iova: bigint; length: number; stillAttached: boolean }[] = [];
  connections: boolean[] = [];
  resets: number[] = [];
  refused: string[] = [];
  irqStates: unknown[][] = [];

  changed(): void {
    this.emit('change');
  }

  waitFor(what: string, cond: () => boolean, timeoutMs: number, context?: () => string): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (!cond()) return;
        cleanup();
        resolve();
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}${context ? `\n${context()}` : ''}`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.off('change', check);
      };
      this.on('change', check);
      check();
    });
  }
}

describe.skipIf(qemuSkip !== undefined)(
  `native binding with QEMU${qemuSkip ? ` (skipped: ${qemuSkip})` : ''}`,
  () => {
    const GUEST_TIMEOUT = 90_000; // a TCG boot takes a few seconds; be generous
    let dir: string;
    let socketPath: string;
    let initrd: string;
    let ctx: NativeContext;
    const rec = new Recorder();
    const qemus: Qemu[] = [];
    const ramViews: { info: DmaRegionInfo; view: Uint8Array }[] = [];
    let msixCap = 0;
    let throwOnOffset = 0x10;

    function startQemu(append: string): Qemu {
      const proc = spawn(
        QEMU,
        [
          '-machine', 'q35', '-accel', 'tcg', '-m', '256M',
          '-object', 'memory-backend-memfd,id=mem,size=256M,share=on',
          '-machine', 'memory-backend=mem',
          '-device', 'pcie-root-port,id=rp0,bus=pcie.0,chassis=1',
          '-device', JSON.stringify({ driver: 'vfio-user-pci', socket: { type: 'unix', path: socketPath }, bus: 'rp0' }),
          '-nographic', '-kernel', KERNEL, '-initrd', initrd,
          '-append', `console=ttyS0 panic=-1 quiet ${append}`,
          '-no-reboot',
        ],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      const q: Qemu = {
        proc,
        lines: [],
        stderr: '',
        exited: new Promise((resolve) => proc.on('exit', (code) => resolve(code))),
      };
      let buf = '';
      proc.stdout!.on('data', (d: Buffer) => {
        buf += d.toString();
        let i: number;
        while ((i = buf.indexOf('\n')) >= 0) {
          // The firmware's escape sequences may precede a line: keep from the marker on.
          const line = buf.slice(0, i).replace(/\r$/, '');
          buf = buf.slice(i + 1);
          const at = line.indexOf('VPHI-');
          q.lines.push(at >= 0 ? line.slice(at) : line);
          rec.changed();
        }
      });
      proc.stderr!.on('data', (d: Buffer) => {
        q.stderr += d.toString();
      });
      proc.on('exit', () => rec.changed());
      qemus.push(q);
      return q;
    }

    const guestLine = (q: Qemu, prefix: string) => q.lines.find((l) => l.startsWith(prefix));
    const tail = (q: Qemu) => () => `guest output:\n${q.lines.slice(-30).join('\n')}\nqemu stderr:\n${q.stderr}`;

    beforeAll(() => {
      dir = tmpDir();
      socketPath = path.join(dir, 'run', 'vphi.sock');
      initrd = path.join(dir, 'initrd.cpio');
      buildInitrd(initrd);
      const binding = loadNativeBinding();
      ctx = binding.createContext(options(socketPath), {
        onAccess(index, offset, len, isWrite) {
          rec.accesses.push({ index, offset, len, isWrite });
          rec.changed();
          if (index === 4 && offset === throwOnOffset) throw new Error('register 0x10 is broken');
          if (!isWrite) ctx.scratch.writeUInt32LE(0xfeedf00d, 0);
        },
        onDmaMap(info) {
          rec.maps.push(info);
          rec.live.add(info);
          rec.changed();
        },
        onDmaUnmap(iova, length) {
          const m = [...rec.live].find((x) => x.iova === iova && x.length === length);
          if (m) rec.live.delete(m);
          // Called before the detach: the memory must still be there.
          const stillAttached = !m?.memory || m.memory.byteLength === length;
          rec.unmaps.push({ iova, length, stillAttached });
          rec.changed();
        },
        onReset(type) {
          rec.resets.push(type);
          rec.changed();
        },
        onIrqState(...args) {
          rec.irqStates.push(args);
          rec.changed();
        },
        onConnection(attached) {
          rec.connections.push(attached);
          rec.changed();
        },
        onLog(level, message) {
          rec.logs.push({ level, message });
          rec.changed();
        },
        onRefused(reason) {
          rec.refused.push(reason);
          rec.changed();
        },
      });
      for (let p = ctx.readConfig(0x34, 1); p !== 0; p = ctx.readConfig(p + 1, 1)) {
        if (ctx.readConfig(p, 1) === 0x11) msixCap = p;
      }
      ctx.regionMemory(0).writeUInt32LE(0xcafebabe, 4);
    });

    afterAll(async () => {
      for (const q of qemus) if (q.proc.exitCode === null && q.proc.signalCode === null) q.proc.kill('SIGKILL');
      await Promise.all(qemus.map((q) => q.exited));
      ctx?.close();
      fs.rmSync(dir, { recursive: true, force: true });
    });

    it('serves a booting guest: attach, config trace, DMA, trapped and memfd BARs, MSI-X', async () => {
      ctx.setLogLevel(7);
      const a = startQemu(`vphi_msix=${msixCap} vphi_bar0w=0x12345678 vphi_sleep=60`);
      await rec.waitFor('onConnection(true)', () => rec.connections.length === 1, GUEST_TIMEOUT, tail(a));
      expect(rec.connections).toEqual([true]);
      expect(ctx.attached()).toBe(true);
      await rec.waitFor('the guest to be ready', () => !!guestLine(a, 'VPHI-GUEST-READY'), GUEST_TIMEOUT, tail(a));

      // Config space accesses are traced by libvfio-user's debug log.
      const debug = rec.logs.filter((l) => l.level === 7).map((l) => l.message);
      expect(debug.some((m) => /^region7: read 0x[0-9a-f]+ from \(0x[0-9a-f]+:[124]\)$/.test(m))).toBe(true);
      expect(debug.some((m) => /^region7: wrote 0x[0-9a-f]+ to \(0x[0-9a-f]+:[124]\)$/.test(m))).toBe(true);

      // Guest RAM arrives as external ArrayBuffers over the shared memfd.
      // (The firmware remaps ROM shadows while it boots: regions come and go,
      // and those already unmapped are detached.)
      const ram = rec.maps.filter((m) => m.memory !== null);
      expect(ram.length).toBeGreaterThan(0);
      for (const m of ram) expect(m.memory!.byteLength).toBe(rec.live.has(m) ? m.length : 0);
      const live = [...rec.live].filter((m) => m.memory !== null);
      expect(live.some((m) => m.iova + BigInt(m.length) === BigInt(GUEST_RAM))).toBe(true);
      // It is really the guest's memory: the kernel command line is in there.
      expect(live.some((m) => Buffer.from(m.memory!).includes('vphi_bar0w=0x12345678'))).toBe(true);
      for (const m of live) ramViews.push({ info: m, view: new Uint8Array(m.memory!) });
      // ROMs and device memory come without an fd: memory null, and no word
      // from the addon (what to say about it is src/server.ts's policy).
      expect(rec.maps.some((m) => m.memory === null)).toBe(true);
      expect(rec.logs.some((l) => /without a file descriptor/.test(l.message))).toBe(false);

      // The guest saw our device with the BAR types we set.
      expect(guestLine(a, 'VPHI-DEV')).toBe('VPHI-DEV 0x0b4000');
      const res = (i: number) => BigInt(guestLine(a, `VPHI-RES ${i} `)!.split(' ')[3]);
      expect(res(0) & 0x2000n).toBe(0x2000n); // IORESOURCE_PREFETCH
      expect(res(0) & 0x100000n).toBe(0x100000n); // IORESOURCE_MEM_64
      expect(res(4) & 0x2000n).toBe(0n);
      expect(res(4) & 0x100000n).toBe(0x100000n);
      expect(res(2) & 0x100000n).toBe(0n);

      // A trapped read reached onAccess and returned what it put in scratch.
      expect(rec.accesses).toContainEqual({ index: 4, offset: 0, len: 4, isWrite: false });
      expect(guestLine(a, 'VPHI-BAR4 ')).toBe('VPHI-BAR4 0xFEEDF00D');
      // A throwing onAccess is reported and fails the access.
      expect(rec.accesses).toContainEqual({ index: 4, offset: 0x10, len: 4, isWrite: false });
      expect(
        rec.logs.some((l) => l.level === 3 && /onAccess\(region 4, offset 0x10, 4 bytes, read\) threw: Error: register 0x10 is broken/.test(l.message)),
      ).toBe(true);

      // The memfd BAR is shared: the guest read our value and wrote its own.
      expect(guestLine(a, 'VPHI-BAR0 ')).toBe('VPHI-BAR0 0xCAFEBABE');
      expect(ctx.regionMemory(0).readUInt32LE(4)).toBe(0x12345678);

      // The guest enabled MSI-X and unmasked vector 0: QEMU handed over its eventfd.
      expect(guestLine(a, 'VPHI-MSIX')).toBe('VPHI-MSIX 0x00000000');
      expect(ctx.readConfig(msixCap + 2, 2) & 0x8000).toBe(0x8000);
      expect(ctx.activeIrqType()).toBe(IRQ_TYPE.MSIX);
      expect(ctx.trigger(IRQ_TYPE.MSIX, 0)).toBe(true);
      expect(ctx.trigger(IRQ_TYPE.MSIX, 1)).toBe(false); // no eventfd yet
      expect(ctx.trigger(IRQ_TYPE.INTX, 0)).toBe(false); // not the active type
    }, GUEST_TIMEOUT * 2);

    it('refuses a second client while QEMU is attached', async () => {
      expect(ctx.attached()).toBe(true);
      const reason = `a client is already attached to ${socketPath}`;

      // A client that speaks: its VERSION request gets an EBUSY error reply.
      const reply = await new Promise<Buffer>((resolve, reject) => {
        const chunks: Buffer[] = [];
        const c = net.connect(socketPath, () => {
          const hdr = Buffer.alloc(16);
          hdr.writeUInt16LE(7, 0); // msg_id
          hdr.writeUInt16LE(1, 2); // VFIO_USER_VERSION
          hdr.writeUInt32LE(16, 4); // msg_size
          c.write(hdr);
        });
        c.on('data', (d) => chunks.push(d));
        c.on('close', () => resolve(Buffer.concat(chunks)));
        c.on('error', reject);
      });
      expect(reply.length).toBe(16);
      expect(reply.readUInt16LE(0)).toBe(7);
      expect(reply.readUInt16LE(2)).toBe(1);
      expect(reply.readUInt32LE(8) & 0xf).toBe(1); // reply
      expect(reply.readUInt32LE(8) & 0x20).toBe(0x20); // error
      expect(reply.readUInt32LE(12)).toBe(os.constants.errno.EBUSY);

      // A client that says nothing is closed after a short while.
      await new Promise<void>((resolve, reject) => {
        const c = net.connect(socketPath);
        c.on('close', () => resolve());
        c.on('error', reject);
        c.resume();
      });
      expect(rec.refused).toEqual([reason, reason]);

      // A second QEMU gives up with the error.
      const b = startQemu('');
      const code = await Promise.race([
        b.exited,
        new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), GUEST_TIMEOUT).unref()),
      ]);
      expect(code).not.toBe('timeout');
      expect(code).not.toBe(0);
      expect(b.stderr).toMatch(/version reply: Device or resource busy/);
      expect(rec.refused.length).toBe(3);
      expect(ctx.attached()).toBe(true);
    }, GUEST_TIMEOUT);

    it('a killed QEMU detaches: onDmaUnmap before the ArrayBuffers are detached', async () => {
      const a = qemus[0];
      const unmapped = rec.unmaps.length;
      const stillMapped = rec.live.size;
      expect(ramViews.length).toBeGreaterThan(0);
      a.proc.kill('SIGKILL');
      await rec.waitFor('onConnection(false)', () => rec.connections.length === 2, GUEST_TIMEOUT);
      expect(rec.connections).toEqual([true, false]);
      expect(ctx.attached()).toBe(false);
      expect(ctx.activeIrqType()).toBe(-1);
      expect(ctx.trigger(IRQ_TYPE.MSIX, 0)).toBe(false);
      expect(rec.resets).toContain(RESET_TYPE.LOST_CONN);
      // Every region still mapped was unmapped, the memory still intact when told.
      expect(rec.live.size).toBe(0);
      expect(rec.unmaps.length - unmapped).toBe(stillMapped);
      expect(rec.unmaps.every((u) => u.stillAttached)).toBe(true);
      // Views kept past the unmap have length 0: they cannot reach the freed mapping.
      for (const { info, view } of ramViews) {
        expect(info.memory!.byteLength).toBe(0);
        expect(view.length).toBe(0);
        expect(view[0]).toBeUndefined();
      }
      expect(rec.maps.every((m) => m.memory === null || m.memory.byteLength === 0)).toBe(true);
    }, GUEST_TIMEOUT);

    it('a new QEMU attaches again, with fresh config space and the same BAR memory', async () => {
      ctx.setLogLevel(3);
      const debugBefore = rec.logs.filter((l) => l.level === 7).length;
      const c = startQemu('');
      await rec.waitFor('onConnection(true) again', () => rec.connections.length === 3, GUEST_TIMEOUT, tail(c));
      expect(rec.connections).toEqual([true, false, true]);
      // Config space was reset with the connection: MSI-X is off again.
      expect(ctx.readConfig(msixCap + 2, 2) & 0x8000).toBe(0);
      expect(ctx.activeIrqType()).toBe(IRQ_TYPE.INTX);
      await rec.waitFor('the second guest to be ready', () => !!guestLine(c, 'VPHI-GUEST-READY'), GUEST_TIMEOUT, tail(c));
      // What the first guest wrote into the memfd BAR survived the reconnect.
      expect(guestLine(c, 'VPHI-BAR0 ')).toBe('VPHI-BAR0 0x12345678');
      expect(guestLine(c, 'VPHI-BAR4 ')).toBe('VPHI-BAR4 0xFEEDF00D');
      const fresh = rec.maps.filter((m) => m.memory !== null && m.memory.byteLength > 0);
      expect(fresh.some((m) => m.iova + BigInt(m.length) === BigInt(GUEST_RAM))).toBe(true);
      // Back at LOG_ERR: no more debug lines.
      expect(rec.logs.filter((l) => l.level === 7).length).toBe(debugBefore);
      expect(await c.exited).toBe(0); // the guest powered off
      await rec.waitFor('onConnection(false) again', () => rec.connections.length === 4, GUEST_TIMEOUT);
      expect(rec.live.size).toBe(0);
    }, GUEST_TIMEOUT * 2);

    // Last: it closes the context. QEMU 11.1.3 aborts (error_setv: Assertion
    // '*errp == NULL', vfio_user_recv_hdr()) when the server's close resets
    // the connection, which a close with QEMU's bytes unread does.
    it("closing the server while QEMU's posted writes wait unread: QEMU reads the end of the stream and does not abort", async () => {
      const c = startQemu('vphi_writes=1 vphi_sleep=60');
      await rec.waitFor('onConnection(true) once more', () => rec.connections.length === 5, GUEST_TIMEOUT, tail(c));
      const seen = rec.accesses.length;
      await rec.waitFor('posted BAR4 writes', () => rec.accesses.slice(seen).filter((a) => a.index === 4 && a.offset === 0x100 && a.isWrite).length >= 3, GUEST_TIMEOUT, tail(c));
      // The loop is blocked meanwhile: the guest's writes queue in the socket, unread.
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 500);
      ctx.close();
      const code = await Promise.race([c.exited, new Promise<'running'>((r) => setTimeout(() => r('running'), 5000).unref())]);
      expect(c.stderr).not.toMatch(/Assertion/);
      expect(c.proc.signalCode, tail(c)()).toBeNull(); // not SIGABRT
      if (code === 'running') c.proc.kill('SIGKILL');
    }, GUEST_TIMEOUT);
  },
);
