import { describe, expect, it } from 'vitest';
import { SCIF_QP, SCIF_RB, QP } from './qp.ts';
import { PAYLOAD, SCIF, SCIFMSG, SCIF_MAX_MSG, decodeMsg, describeMsg, encodeMsg, newMsg, opName } from './msg.ts';
import { member, struct } from './layout.ts';

describe('struct layouts', () => {
  it('puts the remotely used scif_qp members where x86_64 gcc does', () => {
    expect(QP.magic).toBe(0);
    expect(QP['inbound_q.size']).toBe(72);
    expect(QP.local_write).toBe(128);
    expect(QP.local_read).toBe(192);
    expect(QP.local_buf).toBe(208);
    expect(SCIF_QP.size).toBe(256);
    // inbound_q is the second struct scif_rb after the u64 magic.
    expect(QP['inbound_q.size'] - QP['inbound_q.rb_base']).toBe(SCIF_RB.offsetOf.size);
  });

  it('packs scifmsg into 44 bytes with unaligned u64 payloads', () => {
    expect(SCIFMSG.size).toBe(44);
    expect(SCIFMSG.offsetOf.uop).toBe(8);
    expect(SCIFMSG.offsetOf['payload[3]']).toBe(36);
    const m = newMsg(SCIF.CNCT_REQ, { src: { node: 1, port: 1089 }, dst: { node: 0, port: 201 }, payload: [0xffff8880_12345678n, 0x80_0001_4000n, 0n, 0xdeadn] });
    const b = encodeMsg(m);
    expect(b.byteLength).toBe(44);
    expect(Buffer.from(b).readUInt16LE(2)).toBe(1089);
    expect(Buffer.from(b).readBigUInt64LE(20)).toBe(0x80_0001_4000n);
    expect(decodeMsg(b)).toEqual(m);
  });

  it('names every opcode from SCIF_INIT to SCIF_MAX_MSG, each with its payload slots', () => {
    expect(SCIF_MAX_MSG).toBe(39);
    for (let uop = 1; uop <= SCIF_MAX_MSG; uop++) {
      const name = opName(uop);
      expect(name).toMatch(/^SCIF_/);
      expect(PAYLOAD[name.slice(5) as keyof typeof PAYLOAD]).toHaveLength(4);
    }
    expect(opName(0)).toBe('uop 0');
    expect(opName(40)).toBe('uop 40');
  });

  it('describes a message for the trace with payloads by name', () => {
    const d = describeMsg(newMsg(SCIF.CNCT_GNT, { src: { node: 1, port: 7 }, dst: { node: 0, port: 9 }, payload: [1n, 2n, 3n, 4n] }));
    expect(d).toEqual({ op: 'SCIF_CNCT_GNT', uop: 10, src: '1:7', dst: '0:9', payload: { ep: '0x1', qp_offset: '0x2', remote_ep: '0x3' } });
  });

  it('refuses overlapping members and members past sizeof', () => {
    expect(() => struct('x', 8, '', [member('a', 0, 'u64', ''), member('b', 4, 'u32', '')])).toThrow(/overlaps/);
    expect(() => struct('x', 8, '', [member('a', 4, 'u64', '')])).toThrow(/past sizeof/);
  });
});
