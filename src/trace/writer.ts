/**
 * The trace file writer: one JSON line per event, `"us"` (microseconds since
 * the trace started) first. A line is serialized at once (JSON.stringify,
 * no logger in between) into a buffer that goes out in 64 KiB chunks. To a
 * file, each chunk is an asynchronous write at its own position, so the
 * device's hot path never waits on the disk, and close() or the process's
 * exit rewrites every chunk not yet confirmed, synchronously and at the same
 * position, so nothing is lost or doubled. To a pipe or terminal, chunks
 * are written synchronously.
 */
import { closeSync, fstatSync, mkdirSync, openSync, write, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { performance } from 'node:perf_hooks';

const CHUNK = 64 * 1024;

export class TraceWriter {
  private readonly fd: number;
  private readonly ownsFd: boolean;
  private readonly positional: boolean;
  private readonly t0 = performance.now();
  private parts: string[] = [];
  private size = 0;
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

  /** One event: `{"us":N,"kind":K,...data}`. */
  line(kind: string, data: object): void {
    if (!this.open) return;
    const us = Math.round((performance.now() - this.t0) * 1000);
    const rest = JSON.stringify(data);
    const s = `{"us":${us},"kind":${JSON.stringify(kind)}${rest.length > 2 ? `,${rest.slice(1)}` : '}'}\n`;
    this.parts.push(s);
    this.size += s.length;
    if (this.size >= CHUNK) this.flush();
  }

  private take(): Buffer {
    const b = Buffer.from(this.parts.join(''));
    this.parts = [];
    this.size = 0;
    return b;
  }

  /** The buffered lines, to the file. */
  private flush(): void {
    if (!this.size) return;
    const b = this.take();
    if (!this.positional) {
      writeAll(this.fd, b, null);
      return;
    }
    const at = this.pos;
    this.pos += b.length;
    this.unconfirmed.set(at, b);
    write(this.fd, b, 0, b.length, at, (err, n) => {
      if (!err && n === b.length) this.unconfirmed.delete(at);
      // else close() rewrites it
      if (!this.open && !this.unconfirmed.size && this.ownsFd) closeSync(this.fd);
    });
  }

  /** Everything written; the file closed once no asynchronous write is left. */
  close(): void {
    if (!this.open) return;
    this.open = false;
    process.removeListener('exit', this.onExit);
    const last = this.size ? this.take() : null;
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
