/**
 * Names for PCI configuration space offsets, so config-space accesses in
 * the trace read as "COMMAND" or "MSIX.CTRL" rather than bare offsets.
 */

/** Type-0 header registers: [offset, size, name]. */
const HEADER: readonly [number, number, string][] = [
  [0x00, 2, 'VENDOR_ID'], [0x02, 2, 'DEVICE_ID'], [0x04, 2, 'COMMAND'], [0x06, 2, 'STATUS'],
  [0x08, 1, 'REVISION_ID'], [0x09, 3, 'CLASS_CODE'], [0x0c, 1, 'CACHE_LINE_SIZE'], [0x0d, 1, 'LATENCY_TIMER'],
  [0x0e, 1, 'HEADER_TYPE'], [0x0f, 1, 'BIST'],
  [0x10, 4, 'BAR0'], [0x14, 4, 'BAR1'], [0x18, 4, 'BAR2'], [0x1c, 4, 'BAR3'], [0x20, 4, 'BAR4'], [0x24, 4, 'BAR5'],
  [0x28, 4, 'CARDBUS_CIS'], [0x2c, 2, 'SUBSYSTEM_VENDOR_ID'], [0x2e, 2, 'SUBSYSTEM_ID'], [0x30, 4, 'ROM_ADDRESS'],
  [0x34, 1, 'CAPABILITIES_PTR'], [0x3c, 1, 'INTERRUPT_LINE'], [0x3d, 1, 'INTERRUPT_PIN'], [0x3e, 1, 'MIN_GNT'], [0x3f, 1, 'MAX_LAT'],
];

/** Capability layouts by id: [offset within the capability, size, name]. */
const CAPS: Record<number, { name: string; regs: readonly [number, number, string][] }> = {
  0x01: { name: 'PM', regs: [[0, 1, 'ID'], [1, 1, 'NEXT'], [2, 2, 'PMC'], [4, 2, 'PMCSR']] },
  0x05: { name: 'MSI', regs: [[0, 1, 'ID'], [1, 1, 'NEXT'], [2, 2, 'CTRL']] },
  0x10: {
    name: 'PCIE',
    regs: [[0, 1, 'ID'], [1, 1, 'NEXT'], [2, 2, 'FLAGS'], [4, 4, 'DEVCAP'], [8, 2, 'DEVCTL'], [10, 2, 'DEVSTA'],
      [12, 4, 'LNKCAP'], [16, 2, 'LNKCTL'], [18, 2, 'LNKSTA'], [36, 4, 'DEVCAP2'], [40, 2, 'DEVCTL2'], [48, 2, 'LNKCTL2']],
  },
  0x11: { name: 'MSIX', regs: [[0, 1, 'ID'], [1, 1, 'NEXT'], [2, 2, 'CTRL'], [4, 4, 'TABLE'], [8, 4, 'PBA']] },
};

export interface CapLocation {
  id: number;
  offset: number;
}

/** Walk the capability list through a config reader. */
export function walkCapabilities(read8: (off: number) => number): CapLocation[] {
  const out: CapLocation[] = [];
  let p = read8(0x34) & 0xfc;
  const seen = new Set<number>();
  while (p >= 0x40 && p < 0x100 && !seen.has(p)) {
    seen.add(p);
    out.push({ id: read8(p), offset: p });
    p = read8(p + 1) & 0xfc;
  }
  return out;
}

/** A name for a config-space offset: "COMMAND", "BAR4", "MSIX.CTRL", "MSIX.CTRL+1", or "0xNN". */
export function configName(offset: number, caps: readonly CapLocation[] = []): string {
  const within = (regs: readonly [number, number, string][], base: number, prefix: string): string | undefined => {
    for (const [o, s, n] of regs) {
      if (offset >= base + o && offset < base + o + s) {
        const d = offset - base - o;
        return prefix + n + (d ? `+${d}` : '');
      }
    }
    return undefined;
  };
  if (offset < 0x40) return within(HEADER, 0, '') ?? `0x${offset.toString(16)}`;
  for (const c of caps) {
    const layout = CAPS[c.id];
    if (!layout) continue;
    const n = within(layout.regs, c.offset, `${layout.name}.`);
    if (n) return n;
  }
  return `0x${offset.toString(16)}`;
}

/**
 * libvfio-user logs every region access at debug level as
 * "region7: read 0x8086 from (0:2)" / "region7: wrote 0x6 to (0x4:2)".
 * Region 7 is config space: parse those lines into trace events.
 */
const ACCESS_LINE = /^region(\d+): (read|wrote) (0x[0-9a-f]+|0) (?:from|to) \((0x[0-9a-f]+|0):(\d+)\)$/;

export function parseRegionLog(msg: string): { region: number; op: 'r' | 'w'; val: number; off: number; size: number } | null {
  const m = ACCESS_LINE.exec(msg);
  if (!m) return null;
  return { region: Number(m[1]), op: m[2] === 'read' ? 'r' : 'w', val: Number(m[3]), off: Number(m[4]), size: Number(m[5]) };
}
