import { describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { GUEST_CACHE } from '../paths.ts';
import { readCpio } from './cpio.ts';
import { buildGuestInitramfs, INIT_SCRIPT, micGuestFiles } from './image.ts';

const haveImage = existsSync(join(GUEST_CACHE, 'busybox'));

describe.skipIf(!haveImage)('the guest initramfs', () => {
  it('holds init.sh, busybox and every guest program, cached by content', async () => {
    const a = await buildGuestInitramfs([]);
    expect(await buildGuestInitramfs([])).toBe(a);
    const b = await buildGuestInitramfs(['vphi-probe spad']);
    expect(b).not.toBe(a);
    const names = new Map(readCpio(readFileSync(b)).map((e) => [e.name, e]));
    expect(names.get('init')?.data?.toString()).toBe(readFileSync(INIT_SCRIPT, 'utf8'));
    expect(names.has('bin/busybox')).toBe(true);
    expect(names.has('opt/vphi/bin/vphi-probe')).toBe(true);
    expect(names.get('etc/vphi/tests')?.data?.toString()).toBe('vphi-probe spad\n');
  });
});

describe('micGuestFiles', () => {
  it('are the two firmware files and the mic-*.sh scripts', () => {
    const paths = micGuestFiles().map((f) => f.path);
    expect(paths).toEqual(expect.arrayContaining(['/lib/firmware/mic/uos.img', '/lib/firmware/mic/mic0.image', '/opt/vphi/lib/mic-lib.sh', '/opt/vphi/bin/mic-boot']));
  });
});
