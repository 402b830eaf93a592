import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { REPO_ROOT } from '../paths.ts';

const vphi = (...args: string[]) => spawnSync(join(REPO_ROOT, 'bin/vphi'), args, { encoding: 'utf8' });

describe('the vphi command line', () => {
  it('prints its capabilities as JSON (backend convention)', () => {
    const r = vphi('--print-capabilities');
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ type: 'vfio-user-pci', device: '8086:225c', msixVectors: 16 });
  });

  it('answers a bad argument with one clear line and status 2', () => {
    for (const args of [['serve'], ['serve', '--socket-path', '/tmp/x', '--fd', '3'], ['boot', '--aperture', '3M'], ['frob'], ['trace', '/nonexistent']]) {
      const r = vphi(...args);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr.trim().split('\n'), args.join(' ')).toHaveLength(1);
      expect(r.stderr).toMatch(/^vphi: /);
    }
  });
});
