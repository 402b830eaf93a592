/**
 * The trace file writer: one JSON line per event, `"us"` (microseconds since
 * the trace started) first. Lines go straight into a byte buffer that goes
 * out in 64 KiB chunks. To a file, each chunk is an asynchronous write at
 * its own position, so the device's hot path never waits on the disk, and
 * close() or the process's exit rewrites every chunk not yet confirmed,
 * synchronously and at the same position, so nothing is lost or doubled. To
 * a pipe or terminal, chunks are written synchronously.
 *
 * A register access (access(), the hot path) is written as bytes from the
 * register's precomputed text and its numbers, with no object, string or
 * JSON.stringify per access; it names the register and carries the raw
 * numbers, not the fields:
 *
 *   {"us":N,"kind":"mmio","bar":4,"op":"w","block":"dma0","reg":"DCAR0","off":O,"size":4,"val":V,"now":V}
 *
 * plus "word" (a 1- or 2-byte access of a register with fields: the whole
 * register the fields decode from), "ignored":true (a write to a read-only
 * register), or "block":null,"reg":null,"unknown":true (an undeclared
 * offset). A register with fields is declared once, before its first
 * access, so the trace stays self-describing:
 *
 *   {"us":N,"kind":"regdef","bar":4,"block":"dma0","reg":"DCAR0","abs":A,"fields":[["IM0",24,1],["MODE",0,4]]}
 *
 * and format.ts parseTrace() decodes every access's fields from it when the
 * trace is read. Every other event is JSON.stringify'd as it comes (line()).
 */
import { closeSync, fstatSync, mkdirSync, openSync, write, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { TraceRegister } from './tracer.ts';

const CHUNK = 64 * 1024;
/** The buffer holds a chunk and the line that crosses its end. */
const BUF_SIZE = CHUNK + 4096;
/** An access line's bytes besides its register's text: the keys, five numbers, "ignored". */
const ACCESS_MAX = 160;
/** Confirmed chunks kept for reuse. */
const SPARE = 4;

/** The constant text of one register's access lines, as bytes. */
export interface LineParts {
  /** `,"kind":"mmio","bar":4,"op":"r","block":"spad","reg":"SPAD0","off":109344,"size":4,"val":`: an aligned dword. */
  readonly read4: Uint8Array;
  readonly write4: Uint8Array;
  /** The same up to `"off":`, for any other access (or `"block":null,"reg":null,"unknown":true`). */
  readonly read: Uint8Array;
  readonly write: Uint8Array;
  /** After a write's `"now":N`: `}\n`, or `,"ignored":true}\n` (a read-only register). */
  readonly writeEnd: Uint8Array;
  readonly abs: number;
  readonly known: boolean;
  readonly hasFields: boolean;
}

const text = (s: string): Uint8Array => Buffer.from(s, 'utf8');
const US = text('{"us":');
const SIZE = [1, 2, 3, 4].map((n) => text(`,"size":${n},"val":`));
const WORD = text(',"word":');
const NOW = text(',"now":');
const END = text('}\n');

function partsOf(r: TraceRegister): LineParts {
  const def = r.def;
  const name = def ? `"block":${JSON.stringify(r.block)},"reg":${JSON.stringify(def.name)}` : '"block":null,"reg":null,"unknown":true';
  const head = (op: string) => `,"kind":"mmio","bar":${r.bar},"op":"${op}",${name},"off":`;
  return {
    read4: text(`${head('r')}${r.abs},"size":4,"val":`),
    write4: text(`${head('w')}${r.abs},"size":4,"val":`),
    read: text(head('r')),
    write: text(head('w')),
    writeEnd: text(def?.access === 'RO' ? ',"ignored":true}\n' : '}\n'),
    abs: r.abs,
    known: def !== null,
    hasFields: def !== null && def.fields.length > 0,
  };
}

function putBytes(b: Uint8Array, p: number, src: Uint8Array): number {
  b.set(src, p);
  return p + src.length;
}

/** `n` in decimal, as JSON.stringify writes it. */
function putNum(b: Uint8Array, p: number, n: number): number {
  if (!(n >= 0 && n <= Number.MAX_SAFE_INTEGER) || n % 1 !== 0) {
    const s = JSON.stringify(n);
    for (let i = 0; i < s.length; i++) b[p + i] = s.charCodeAt(i);
    return p + s.length;
  }
  let len = n < 1e5 ? (n < 1e2 ? (n < 10 ? 1 : 2) : n < 1e3 ? 3 : n < 1e4 ? 4 : 5) : n < 1e7 ? (n < 1e6 ? 6 : 7) : n < 1e8 ? 8 : n < 1e9 ? 9 : 10;
  for (let t = 1e10; n >= t; t *= 10) len++;
  let q = p + len;
  let m = n;
  for (; m > 0x7fffffff; m = Math.floor(m / 10)) b[--q] = 48 + (m % 10);
  do {
    const d = (m / 10) | 0;
    b[--q] = 48 + m - d * 10;
    m = d;
  } while (m > 0);
  return p + len;
}

export class TraceWriter {
  private readonly fd: number;
  private readonly ownsFd: boolean;
  private readonly positional: boolean;
  private readonly t0 = performance.now();
  /** The time of the last line, µs. */
  private lastUs = 0;
  /** The chunk being filled, `at` bytes so far. */
  private buf: Buffer = Buffer.allocUnsafe(BUF_SIZE);
  private at = 0;
  private readonly spare: Buffer[] = [];
  /** The file position of the next chunk. */
  private pos = 0;
  /** Chunks written asynchronously and not yet confirmed, by position. */
  private readonly unconfirmed = new Map<number, Buffer>();
  private open = true;
  private readonly onExit = () => this.close();

  constructor(dest: string | number) {
    if (typeof dest === 'string') {
      mkdirSync(dirname(dest), { recursive: true });
      this.fd = openSync(dest, 'w');
      this.ownsFd = true;
    } else {
      this.fd = dest;
      this.ownsFd = false;
    }
    this.positional = fstatSync(this.fd).isFile();
    process.once('exit', this.onExit);
  }

  private us(): number {
    return (this.lastUs = Math.round((performance.now() - this.t0) * 1000));
  }

  /** One event: `{"us":N,"kind":K,...data}`. */
  line(kind: string, data: object): void {
    if (!this.open) return;
    const rest = JSON.stringify(data);
    const s = `{"us":${this.us()},"kind":${JSON.stringify(kind)}${rest.length > 2 ? `,${rest.slice(1)}` : '}'}\n`;
    // UTF-8 takes at most 3 bytes per UTF-16 unit.
    if (this.at + 3 * s.length > this.buf.length) {
      this.flush();
      if (3 * s.length > this.buf.length) {
        this.emit(Buffer.from(s, 'utf8'), null);
        return;
      }
    }
    this.at += this.buf.write(s, this.at, 'utf8');
    if (this.at >= CHUNK) this.flush();
  }

  /** A register access (Tracer.access()): see the top of this file. `later`: at the last line's time (one clock read per guest access). */
  access(r: TraceRegister, op: 'r' | 'w', off: number, size: number, val: number, word: number, now: number, later = false): void {
    if (!this.open) return;
    if (r.declaredTo !== this) this.declare(r);
    const parts = r.parts ?? (r.parts = partsOf(r));
    if (this.at + ACCESS_MAX + parts.write4.length > this.buf.length) this.flush();
    const b = this.buf;
    let p = putBytes(b, this.at, US);
    p = putNum(b, p, later ? this.lastUs : this.us());
    if (off === parts.abs && size === 4) {
      p = putBytes(b, p, op === 'w' ? parts.write4 : parts.read4);
    } else {
      p = putBytes(b, p, op === 'w' ? parts.write : parts.read);
      p = putNum(b, p, off);
      p = putBytes(b, p, SIZE[(size - 1) & 3]);
    }
    p = putNum(b, p, val);
    if (parts.hasFields && size < 4) {
      p = putBytes(b, p, WORD);
      p = putNum(b, p, word);
    }
    if (parts.known && op === 'w') {
      p = putBytes(b, p, NOW);
      p = putNum(b, p, now);
      p = putBytes(b, p, parts.writeEnd);
    } else {
      p = putBytes(b, p, END);
    }
    this.at = p;
    if (p >= CHUNK) this.flush();
  }

  /** The `regdef` line of a register with fields, once per writer. */
  private declare(r: TraceRegister): void {
    r.declaredTo = this;
    const def = r.def;
    if (!def?.fields.length) return;
    this.line('regdef', { bar: r.bar, block: r.block, reg: def.name, abs: r.abs, fields: def.fields.map((f) => [f.name, f.lo, f.width]) });
  }

  /** The buffered lines, to the file. */
  private flush(): void {
    if (!this.at) return;
    const chunk = this.buf;
    const n = this.at;
    this.at = 0;
    if (!this.positional) {
      writeAll(this.fd, chunk.subarray(0, n), null);
      return;
    }
    this.buf = this.spare.pop() ?? Buffer.allocUnsafe(BUF_SIZE);
    this.emit(chunk.subarray(0, n), chunk);
  }

  /** `b` at the next position, asynchronously (a file) or at once (a pipe); `chunk`, once written, is reused. */
  private emit(b: Buffer, chunk: Buffer | null): void {
    if (!this.positional) {
      writeAll(this.fd, b, null);
      return;
    }
    const at = this.pos;
    this.pos += b.length;
    this.unconfirmed.set(at, b);
    write(this.fd, b, 0, b.length, at, (err, n) => {
      if (!err && n === b.length) {
        this.unconfirmed.delete(at);
        if (chunk && this.open && this.spare.length < SPARE) this.spare.push(chunk);
      }
      // else close() rewrites it
      if (!this.open && !this.unconfirmed.size && this.ownsFd) closeSync(this.fd);
    });
  }

  /** Everything written; the file closed once no asynchronous write is left. */
  close(): void {
    if (!this.open) return;
    this.open = false;
    process.removeListener('exit', this.onExit);
    const last = this.at ? this.buf.subarray(0, this.at) : null;
    this.at = 0;
    if (this.positional) {
      for (const [at, b] of this.unconfirmed) writeAll(this.fd, b, at);
      if (last) writeAll(this.fd, last, this.pos);
    } else if (last) writeAll(this.fd, last, null);
    // An asynchronous write still pending closes the file in its callback
    // (closing it now could hand its fd number to another file first).
    if (!this.unconfirmed.size && this.ownsFd) closeSync(this.fd);
  }
}

function writeAll(fd: number, b: Buffer, at: number | null): void {
  let off = 0;
  while (off < b.length) off += writeSync(fd, b, off, b.length - off, at === null ? null : at + off);
}
