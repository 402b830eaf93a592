import { describe, expect, it } from 'vitest';
import { COSM_MSG_ID, COSM_MSG_SIZE, decodeCosmMsg, describeCosmMsg, encodeCosmMsg } from './msg.ts';

describe('struct cosm_msg', () => {
  it('lays out id, then the timespec or shutdown_status union, little-endian', () => {
    const b = encodeCosmMsg({ id: BigInt(COSM_MSG_ID.COSM_MSG_SYNC_TIME), tv_sec: 0x1122334455n, tv_nsec: 999n });
    expect(b.length).toBe(COSM_MSG_SIZE);
    expect(Buffer.from(b).toString('hex')).toBe('0100000000000000' + '5544332211000000' + 'e703000000000000');
    const s = encodeCosmMsg({ id: 3n, shutdown_status: 3n });
    expect(Buffer.from(s).toString('hex')).toBe('0300000000000000' + '0300000000000000' + '0000000000000000');
    expect(decodeCosmMsg(b)).toEqual({ id: 1n, shutdown_status: 0x1122334455n, tv_sec: 0x1122334455n, tv_nsec: 999n });
  });

  it('names the message and its fields for the trace', () => {
    expect(describeCosmMsg(decodeCosmMsg(encodeCosmMsg({ id: 1n, tv_sec: 5n, tv_nsec: 6n })))).toEqual({
      msg: 'COSM_MSG_SYNC_TIME',
      id: 1,
      tv_sec: 5,
      tv_nsec: 6,
    });
    expect(describeCosmMsg({ id: 3n, shutdown_status: 4n })).toEqual({
      msg: 'COSM_MSG_SHUTDOWN_STATUS',
      id: 3,
      shutdown_status: 4,
    });
    expect(describeCosmMsg({ id: 0xffffffffffffffffn })).toEqual({ msg: 'unknown', id: '0xffffffffffffffff' });
  });
});
