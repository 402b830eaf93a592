import { describe, expect, it } from 'vitest';
import { makeCard } from './testing.ts';
import { IRQ_TYPE } from '../../src/binding/types.ts';
import { MIC_MAGIC } from './boot/device-page.ts';

// BAR4 offsets as the Linux host driver uses them (mic_x100.h).
const SPAD = (n: number) => 0x1ab20 + 4 * n;
const SMPT = (i: number) => 0x13100 + 4 * i;
const SICR0 = 0x19004, SICE0 = 0x1900c, SICC0 = 0x19010, SIAC0 = 0x19014;
const MXAR = (i: number) => 0x19044 + 4 * i;
const APICICR_LO = (n: number) => 0x1a9d0 + 8 * n;
const APICICR_HI = (n: number) => 0x1a9d4 + 8 * n;
const RDMASR = (m: number) => 0x1b180 + 4 * m;
const SDBIC = (n: number) => 0x1cc90 + 4 * n;
const RGCR = 0x14010, POSTCODE = 0x242c;

describe('x100 register map', () => {
  it('comes up ready for a download (SPAD2) with post code "FF"', () => {
    const { r } = makeCard({ apertureSize: 512 << 20 });
    expect(r(SPAD(2))).toBe(0x04000001);
    expect(r(POSTCODE)).toBe(0x4646);
  });

  it('scales the download address down for a small aperture', () => {
    const { r } = makeCard({ apertureSize: 4 << 20 });
    expect(r(SPAD(2))).toBe(0x00080001);
  });

  it('stores scratchpads, SMPT and MXAR as the driver writes them', () => {
    const { r, w } = makeCard();
    for (let i = 0; i < 32; i++) w(SMPT(i), i << 2);
    w(SPAD(14), 0x13000);
    w(SPAD(15), 0x80);
    expect(r(SMPT(31))).toBe(31 << 2);
    expect(r(SPAD(14))).toBe(0x13000);
    w(MXAR(3), r(MXAR(3)) | 0x800);
    expect(r(MXAR(3))).toBe(0x800);
  });

  it('reads 0 and ignores writes at offsets no register covers', () => {
    const { card, r, w, env } = makeCard();
    w(0x1f000, 0xffffffff);
    expect(r(0x1f000)).toBe(0);
    expect(card.bar4.defAt(0x1f000)).toBeUndefined();
    expect(env.tracer.events.filter((e) => e.kind === 'mmio' && e.unknown).length).toBe(2);
  });

  it('makes RGCR bit 0 self-clearing', () => {
    const { r, w } = makeCard();
    w(RGCR, r(RGCR) | 1);
    expect(r(RGCR)).toBe(0);
  });

  it('lets the pages of host memory go once reset (RGCR, PCI reset): nothing on the card refers to them', () => {
    const { env, card, r, w } = makeCard();
    expect(env.ctx.drops).toBe(0);
    w(RGCR, r(RGCR) | 1);
    expect(env.ctx.drops).toBe(1);
    card.reset('test');
    expect(env.ctx.drops).toBe(2);
  });
});

describe('SMPT translation', () => {
  it('translates the system window through the live registers', () => {
    const { card, w } = makeCard();
    w(SMPT(0), 0 << 2);
    w(SMPT(1), 5 << 2);
    expect(card.smpt.translate(0x80_0001_3000n)).toBe(0x13000n);
    expect(card.smpt.translate(0x80_0000_0000n + (1n << 34n) + 0x42n)).toBe((5n << 34n) + 0x42n);
    w(SMPT(1), 6 << 2); // no caching across SMPT writes
    expect(card.smpt.translate(0x80_0000_0000n + (1n << 34n))).toBe(6n << 34n);
  });

  it('reaches guest RAM and GDDR through one card address space, and refuses the rest', () => {
    const { card, env, w } = makeCard();
    const ram = env.mapRam(0x100000n, 0x10000);
    w(SMPT(0), 0);
    card.mem.writeU64(0x80_0010_0008n, 0x1122334455667788n);
    expect(Buffer.from(ram.subarray(8, 16)).readBigUInt64LE(0)).toBe(0x1122334455667788n);
    card.mem.writeU64(0x40n, 7n);
    expect(card.aperture.readBigUInt64LE(0x40)).toBe(7n);
    expect(() => card.mem.view(0x80_0020_0000n, 8, false)).toThrow(/no guest memory mapped/);
    expect(() => card.mem.view(BigInt(card.aperture.byteLength) - 4n, 8, false)).toThrow(/outside card memory/);
    expect(() => card.mem.view(0x08_007c_0000n, 4, false)).toThrow(/outside card memory/);
  });

  it('splits a copy that crosses a 16 GiB SMPT page', () => {
    const { card, env, w } = makeCard();
    const a = env.mapRam((3n << 34n) - 0x1000n, 0x1000); // end of host page 2
    const b = env.mapRam(9n << 34n, 0x1000); // start of host page 9
    w(SMPT(0), 2 << 2);
    w(SMPT(1), 9 << 2);
    card.aperture.fill(0xab, 0, 0x2000);
    card.mem.copy(0x80_0000_0000n + (1n << 34n) - 0x1000n, 0n, 0x2000);
    expect(a.every((x) => x === 0xab)).toBe(true);
    expect(b.every((x) => x === 0xab)).toBe(true);
  });
});

describe('interrupts (SICR0/SICE0/SICC0/SIAC0/MXAR)', () => {
  function msixCard() {
    const c = makeCard();
    c.env.enableMsix();
    // mic_x100_enable_interrupts with MSI-X, then DMA channel 0 → vector 0, doorbell 0 → vector 4.
    c.w(SICE0, c.r(SICE0) | 0xff0f);
    c.w(SIAC0, c.r(SIAC0) | 0xff0f);
    c.w(MXAR(0), 1 << 8);
    c.w(MXAR(4), 1 << 0);
    return c;
  }

  it('sends one MSI-X message per event to every entry MXAR routes the source to', () => {
    const { card, env, w } = msixCard();
    w(MXAR(5), 1 << 0); // a second request for doorbell 0 (SCIF and VOP share it)
    card.intc.raise(0);
    card.intc.raise(0);
    card.intc.raise(8);
    expect(env.msixVectors()).toEqual([4, 5, 4, 5, 0]);
  });

  it('auto-clears SICR0 when SIAC0 says so, and keeps it otherwise', () => {
    const { card, r, w } = msixCard();
    card.intc.raise(8);
    expect(r(SICR0)).toBe(0);
    w(SIAC0, r(SIAC0) & ~0x100);
    card.intc.raise(8);
    expect(r(SICR0)).toBe(0x100);
    w(SICR0, 0x100); // W1C
    expect(r(SICR0)).toBe(0);
  });

  it('keeps a disabled source pending and delivers it when SICE0 enables it', () => {
    const { card, env, r, w } = msixCard();
    w(SICC0, 0x1); // disable doorbell 0
    expect(r(SICE0)).toBe(0xff0e);
    card.intc.raise(0);
    expect(env.msixVectors()).toEqual([]);
    expect(r(SICR0)).toBe(0x1);
    w(SICE0, r(SICE0) | 0x1);
    expect(env.msixVectors()).toEqual([4]);
    expect(r(SICR0)).toBe(0);
  });

  it('does not resend when the B0+ workaround rewrites SICE0 unchanged', () => {
    const { card, env, r, w } = msixCard();
    w(SIAC0, 0); // no auto-clear: SICR0 stays set
    card.intc.raise(0);
    w(SICE0, r(SICE0) | 0xff0f);
    expect(env.msixVectors()).toEqual([4]);
  });

  it('holds an interrupt whose vector has no eventfd yet and delivers it on unmask', () => {
    const { card, env } = msixCard();
    env.eventfds.delete(4);
    card.intc.raise(0);
    expect(env.msixVectors()).toEqual([]);
    expect(env.irq.pending[4]).toBe(1);
    env.eventfds.add(4);
    env.irq.retry();
    expect(env.msixVectors()).toEqual([4]);
  });

  it('drives INTx from (SICR0 & SICE0) when MSI-X is off, and drops it on the write-back', () => {
    const { card, env, r, w } = makeCard();
    w(SICE0, r(SICE0) | 0xff0f);
    card.intc.raise(1);
    expect(env.irq.intx).toBe(true);
    expect(env.fired).toEqual([[IRQ_TYPE.INTX, 0]]);
    const cause = r(SICR0); // mic_interrupt(): read, then write back
    w(SICR0, cause);
    expect(env.irq.intx).toBe(false);
  });

  it('raises host doorbell n when the card writes DBREQ to SDBICn', () => {
    const { env, r, w } = msixCard();
    w(SDBIC(0), 0x80000000);
    expect(env.msixVectors()).toEqual([4]);
    expect(r(SDBIC(0))).toBe(0);
  });
});

describe('host → card doorbells', () => {
  /** A block that subscribes to every doorbell but 7 (the boot ROM's), as the SCIF node does to its own. */
  function withDoorbells() {
    const c = makeCard();
    const rung: number[] = [];
    for (let db = 0; db < 16; db++) if (db !== 7) c.card.intc.doorbells.subscribe(db, (n) => rung.push(n));
    return { ...c, rung };
  }

  it('decodes APICICR0-7 (bit 13, self-clearing) and RDMASR0-7', () => {
    const { r, w, rung } = withDoorbells();
    w(APICICR_LO(3), r(APICICR_LO(3)) | (1 << 13)); // mic_x100_send_sbox_intr
    expect(r(APICICR_LO(3)) & (1 << 13)).toBe(0);
    w(APICICR_LO(2), 0x10); // no send bit: not a doorbell
    w(RDMASR(2), 0); // mic_x100_send_rdmasr_intr: doorbell 10
    expect(rung).toEqual([3, 10]);
  });

  it('stops delivering once a subscriber unsubscribes, and traces unowned rings', () => {
    const c = makeCard();
    const rung: number[] = [];
    const off = c.card.intc.doorbells.subscribe(10, (n) => rung.push(n));
    c.w(RDMASR(2), 0);
    off();
    c.w(RDMASR(2), 0);
    expect(rung).toEqual([10]);
    const rings = c.env.tracer.events.filter((e) => e.kind === 'doorbell');
    expect(rings.map((e) => [e.db, e.owners])).toEqual([[10, 1], [10, 0]]);
  });

  it('also decodes the RDMASR index bias of 3.13-era hosts, but not SBQ/TLB flush', () => {
    const { w, rung } = withDoorbells();
    w(RDMASR(17 + 5), 0);
    w(0x1b1a0, 1);
    w(0x1b1a4, 1);
    expect(rung).toEqual([13]);
  });
});

describe('reset and boot', () => {
  it('a card reset (RGCR) clears DMA, SICR0 and the doorbells; SMPT, MXAR, SICE0/SIAC0 and SPADs survive', () => {
    const { card } = makeCard();
    const cleared = card.bar4.clearedOnCardReset();
    const expected = card.bar4.listing().map(({ def }) => def.name).filter((n) =>
      n === 'SICR0' || /^(APICICR|RDMASR|SDBIC)\d/.test(n) || /^(DCAR|DHPR|DTPR|DAUX_LO|DAUX_HI|DRAR_LO|DRAR_HI|DITR|DSTAT|DSTATWB_LO|DSTATWB_HI|DCHERR|DCHERRMSK)\d$|^DCR$/.test(n));
    expect(cleared).toEqual(expected);
    expect(cleared).toHaveLength(1 + 16 + 16 + 4 + 8 * 13 + 1);
  });

  /** What the host does at probe and in _mic_start, far enough for the card to boot. */
  function hostStart(c: ReturnType<typeof makeCard>, opts: { magic?: number } = {}) {
    const { env, w, card } = c;
    const ram = env.mapRam(0x10000n, 0x10000);
    for (let i = 0; i < 32; i++) w(SMPT(i), i << 2);
    // Device page at guest-physical 0x13000: card address 0x80_0001_3000.
    const dp = Buffer.from(ram.buffer, 0x3000, 4096);
    dp.writeUInt32LE(opts.magic ?? MIC_MAGIC, 0);
    dp.writeInt8(-1, 4);
    dp[5] = 1; // node_id
    dp[6] = 0xff;
    dp[7] = 0; // c2h_scif_db
    dp.writeBigUInt64LE(0x80_0001_4000n, 8);
    w(SPAD(14), 0x13000);
    w(SPAD(15), 0x80);
    // The image at the download address, SPAD5, the command line, the ramdisk header patch.
    const b = c.r(SPAD(2)) & 0xfffff000;
    card.aperture.fill(0x90, b, b + 8192);
    card.aperture.write(' mem=4M\0', b + 8192, 'latin1');
    card.aperture.writeUInt32LE(2 * b, b + 0x218);
    card.aperture.writeUInt32LE(4096, b + 0x21c);
    w(SPAD(5), 8192);
    w(APICICR_HI(7), 0);
    w(APICICR_LO(7), 0x20e5); // mic_x100_send_firmware_intr
  }

  it('boots on APICICR7 vector 229 and reads the device page through the SMPT', () => {
    const c = makeCard();
    hostStart(c);
    const bs = c.card.bootstrap;
    expect(bs.state).toBe('running');
    expect(bs.lastBoot?.error).toBeNull();
    expect(bs.lastBoot?.devicePageAddr).toBe(0x80_0001_3000n);
    expect(bs.lastBoot?.bootParam).toMatchObject({ magic: MIC_MAGIC, nodeId: 1, c2hScifDb: 0, scifHostDmaAddr: 0x80_0001_4000n });
    expect(bs.lastBoot?.download).toMatchObject({ bootAddr: 0x80000, imageSize: 8192, cmdline: ' mem=4M', ramdiskAddr: 0x100000, ramdiskSize: 4096 });
    expect(c.r(POSTCODE)).toBe(0x534f);
    expect(c.r(SPAD(2)) & 1).toBe(0);
  });

  it('records a bad device page instead of failing', () => {
    const c = makeCard();
    hostStart(c, { magic: 0xdeadbeef });
    expect(c.card.bootstrap.state).toBe('running');
    expect(c.card.bootstrap.lastBoot?.error).toMatch(/magic 0xdeadbeef/);
  });

  it('treats APICICR7 as doorbell 7 once the card runs', () => {
    const c = makeCard();
    const rung: number[] = [];
    c.card.intc.doorbells.subscribe(7, (db, lo) => rung.push(db, lo ?? -1));
    hostStart(c);
    c.w(APICICR_LO(7), 0x20e5);
    expect(c.card.bootstrap.boots).toBe(1);
    // Both rings reached doorbell 7's subscribers through the real path; only the first booted.
    expect(rung).toEqual([7, 0x20e5, 7, 0x20e5]);
  });

  it('resets on RGCR: not ready at once, ready again after the reset delay', () => {
    const c = makeCard({ resetDelayMs: 200 });
    hostStart(c);
    c.card.intc.raise(0);
    c.w(SPAD(2), 0); // mic_x100_reset_fw_ready
    c.w(RGCR, c.r(RGCR) | 1); // mic_x100_hw_reset
    expect(c.card.bootstrap.state).toBe('resetting');
    expect(c.r(SPAD(2)) & 1).toBe(0);
    expect(c.r(SICR0)).toBe(0);
    c.env.advance(199);
    expect(c.r(SPAD(2)) & 1).toBe(0);
    c.env.advance(1);
    expect(c.r(SPAD(2))).toBe(0x00080001);
    expect(c.card.bootstrap.state).toBe('ready');
    // SMPT and SPAD14/15 survive a card reset.
    expect(c.r(SMPT(5))).toBe(5 << 2);
    expect(c.r(SPAD(14))).toBe(0x13000);
  });

  it('boots again after a reset, ten times over', () => {
    const c = makeCard();
    for (let i = 0; i < 10; i++) {
      hostStart(c);
      expect(c.card.bootstrap.state).toBe('running');
      c.w(SPAD(2), 0);
      c.w(RGCR, 1);
      c.env.advance(1000);
      expect(c.card.bootstrap.state).toBe('ready');
    }
    expect(c.card.bootstrap.boots).toBe(10);
    expect(c.card.bootstrap.resets).toBe(10);
  });

  it('a PCI-level reset puts every register back and the card ready', () => {
    const c = makeCard();
    hostStart(c);
    c.card.reset('test');
    expect(c.r(SPAD(14))).toBe(0);
    expect(c.r(SMPT(3))).toBe(0);
    expect(c.card.bootstrap.state).toBe('ready');
    expect(c.r(SPAD(2)) & 1).toBe(1);
  });
});

describe('the DMA engine inside the card', () => {
  const CH = (ch: number, r: number) => 0x1a000 + 0x40 * ch + r;
  const DCR = 0x1a280;

  /** mic_dma_chan_setup() for channel 0 with an 8-entry ring in guest RAM at 0x20000. */
  function setup() {
    const c = makeCard();
    c.env.enableMsix();
    const ram = c.env.mapRam(0x0n, 0x100000);
    for (let i = 0; i < 32; i++) c.w(SMPT(i), i << 2);
    c.w(SICE0, 0xff0f);
    c.w(SIAC0, 0xff0f);
    c.w(MXAR(0), 1 << 8);
    c.w(DCR, c.r(DCR) & ~(1 << 1));
    c.w(CH(0, 0x00), c.r(CH(0, 0x00)) | (1 << 25));
    c.w(CH(0, 0x30), 0);
    c.w(CH(0, 0x14), 0x20000);
    c.w(CH(0, 0x18), (1 << 26) | (8 << 4));
    c.r(CH(0, 0x08));
    c.w(CH(0, 0x00), c.r(CH(0, 0x00)) & ~(1 << 25));
    c.w(DCR, c.r(DCR) | (1 << 1));
    return { ...c, ram: Buffer.from(ram.buffer) };
  }

  it('runs a memcpy and an interrupting status descriptor, raising MSI-X through MXAR', () => {
    const c = setup();
    expect(c.r(CH(0, 0x2c))).toBe(0); // DCHERR
    expect(c.r(CH(0, 0x20)) & (1 << 29)).toBe(0); // DSTAT quiesce
    c.ram.fill(0x5a, 0x40000, 0x40000 + 4096);
    // MEMCPY guest 0x40000 → card 0x1000, 4 KiB; then STATUS 0x77 → guest 0x30000 with bit 59.
    c.ram.writeBigUInt64LE(0x80_0004_0000n | (BigInt(4096 / 64) << 46n), 0x20000);
    c.ram.writeBigUInt64LE(0x1000n | (1n << 60n), 0x20008);
    c.ram.writeBigUInt64LE(0x77n, 0x20010);
    c.ram.writeBigUInt64LE(0x80_0003_0000n | (2n << 60n) | (1n << 59n), 0x20018);
    c.w(CH(0, 0x04), 2); // DHPR
    c.env.drain();
    expect(c.card.aperture.subarray(0x1000, 0x2000).every((b) => b === 0x5a)).toBe(true);
    expect(c.ram.readBigUInt64LE(0x30000)).toBe(0x77n);
    expect(c.r(CH(0, 0x20)) & 0x1ffff).toBe(2);
    expect(c.env.msixVectors()).toEqual([0]);
  });

  it('is stopped and emptied by an RGCR reset', () => {
    const c = setup();
    c.w(CH(0, 0x04), 3); // three NOPs (a zeroed ring)
    c.env.drain();
    expect(c.r(CH(0, 0x08))).toBe(3);
    c.w(RGCR, 1);
    expect(c.r(CH(0, 0x08))).toBe(0);
    expect(c.r(CH(0, 0x04))).toBe(0);
    expect(c.r(DCR)).toBe(0x55);
  });
});
