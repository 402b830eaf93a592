import { describe, expect, it } from 'vitest';
import { findResult, flattenResults, parseKtap, parseKtapDocuments, summarize } from './ktap.ts';

const lines = (s: string) => s.replace(/^\n/, '').split('\n');

describe('parseKtap', () => {
  it('reads version, plan, results, descriptions and diagnostics', () => {
    const doc = parseKtap(
      lines(`
KTAP version 1
1..3
# device 8086:225c at 0000:01:00.0
ok 1 - find-device
# BAR0 size 0x1000, expected 0x20000000
not ok 2 - bar0-size
ok 3 spad`),
    );
    expect(doc.version).toBe(1);
    expect(doc.plan).toBe(3);
    expect(doc.results.map((r) => [r.number, r.name, r.ok])).toEqual([
      [1, 'find-device', true],
      [2, 'bar0-size', false],
      [3, 'spad', true],
    ]);
    expect(doc.results[0].diagnostics).toEqual(['device 8086:225c at 0000:01:00.0']);
    expect(doc.results[1].diagnostics).toEqual(['BAR0 size 0x1000, expected 0x20000000']);
    expect(doc.results[2].diagnostics).toEqual([]);
    expect(doc.diagnostics).toHaveLength(2);
    expect(doc.errors).toEqual([]);
    expect(summarize(doc)).toEqual({ total: 3, passed: 2, failed: 1, skipped: 0, missing: 0, ok: false });
  });

  it('reads directives: SKIP with a reason, TODO, and a plain # comment', () => {
    const doc = parseKtap(
      lines(`
KTAP version 1
1..4
ok 1 - msix # SKIP no MSI-X here
ok 2 needs-mic-kernel # skip
not ok 3 - later # TODO not written yet
ok 4 - timed # took 3 ms`),
    );
    const [a, b, c, d] = doc.results;
    expect([a.directive, a.reason, a.skipped, a.name]).toEqual(['SKIP', 'no MSI-X here', true, 'msix']);
    expect([b.directive, b.reason, b.skipped]).toEqual(['SKIP', undefined, true]);
    expect([c.directive, c.reason, c.skipped, c.ok]).toEqual(['TODO', 'not written yet', false, false]);
    expect([d.directive, d.reason, d.name]).toEqual([undefined, 'took 3 ms', 'timed']);
    expect(summarize(doc)).toMatchObject({ passed: 1, skipped: 2, failed: 1 });
  });

  it('ignores kernel messages and other chatter, before and within a document', () => {
    const doc = parseKtap(
      lines(`
[    0.000000] Linux version 6.12.117+deb13-amd64
Run /init as init process
VPHI-GUEST-START uptime=2.51
KTAP version 1
1..2
[    3.100000] pcieport 0000:00:02.0: something
ok 1 a
hello from a program
    [    3.2] indented noise
ok 2 b
VPHI-GUEST-DONE rc=0
[    3.3] reboot: Power down`),
    );
    expect(doc.results.map((r) => r.name)).toEqual(['a', 'b']);
    expect(doc.errors).toEqual([]);
    expect(summarize(doc).ok).toBe(true);
  });

  it('nests KUnit-style subtests (# Subtest: at the child level)', () => {
    const doc = parseKtap(
      lines(`
KTAP version 1
1..2
    KTAP version 1
    # Subtest: example
    1..2
    ok 1 example_simple_test
    # a failure detail
    not ok 2 example_failing_test
# example: pass:1 fail:1
not ok 1 example
    KTAP version 1
    # Subtest: other
    1..1
    ok 1 other_test # SKIP unsupported
ok 2 other`),
    );
    expect(doc.plan).toBe(2);
    const [ex, other] = doc.results;
    expect(ex.ok).toBe(false);
    expect(ex.subtests?.name).toBe('example');
    expect(ex.subtests?.version).toBe(1);
    expect(ex.subtests?.plan).toBe(2);
    expect(ex.subtests?.results.map((r) => [r.name, r.ok])).toEqual([
      ['example_simple_test', true],
      ['example_failing_test', false],
    ]);
    expect(ex.subtests?.results[1].diagnostics).toEqual(['a failure detail']);
    expect(ex.diagnostics).toEqual(['example: pass:1 fail:1']);
    expect(other.subtests?.name).toBe('other');
    expect(other.subtests?.results[0].skipped).toBe(true);
    expect(doc.errors).toEqual([]);
  });

  it("nests init.sh-style subtests (# Subtest: at the parent's level, program output indented)", () => {
    const doc = parseKtap(
      lines(`
KTAP version 1
1..2
# Subtest: vphi-probe
    KTAP version 1
    1..2
    ok 1 - find-device
    # SPAD3: read 0x0, wrote 0xc0de0003
    not ok 2 - spad-readback
    # vphi-probe: 1 of 2 failed
    # dmesg: [    3.5] something the kernel said
# vphi-probe: exit status 1
not ok 1 vphi-probe spad
# Subtest: true
ok 2 true`),
    );
    const [probe, t] = doc.results;
    expect(probe.name).toBe('vphi-probe spad');
    expect(probe.ok).toBe(false);
    expect(probe.diagnostics).toEqual(['vphi-probe: exit status 1']);
    expect(probe.subtests?.name).toBe('vphi-probe');
    expect(probe.subtests?.results.map((r) => r.name)).toEqual(['find-device', 'spad-readback']);
    expect(probe.subtests?.results[1].diagnostics).toEqual(['SPAD3: read 0x0, wrote 0xc0de0003']);
    expect(probe.subtests?.diagnostics).toContain('dmesg: [    3.5] something the kernel said');
    expect(t.subtests).toBeUndefined();
    expect(findResult(doc, 'vphi-probe', 'spad-readback')?.ok).toBe(false);
    expect(findResult(doc, 'vphi-probe spad', 'find-device')?.ok).toBe(true);
    expect(findResult(doc, 'vphi-probe', 'nope')).toBeUndefined();
  });

  it('nests three levels deep, with 2-space indentation', () => {
    const doc = parseKtap(
      lines(`
KTAP version 1
1..1
  KTAP version 1
  1..1
    KTAP version 1
    1..2
    ok 1 leaf-a
    ok 2 leaf-b
  ok 1 middle
ok 1 top`),
    );
    const leaf = doc.results[0].subtests?.results[0].subtests;
    expect(leaf?.results.map((r) => r.name)).toEqual(['leaf-a', 'leaf-b']);
    expect(flattenResults(doc).map((f) => f.path.join('/'))).toEqual([
      'top/middle/leaf-a',
      'top/middle/leaf-b',
      'top/middle',
      'top',
    ]);
    expect(summarize(doc).ok).toBe(true);
  });

  it('reports a plan mismatch, out-of-order numbers, and missing results', () => {
    const doc = parseKtap(
      lines(`
KTAP version 1
1..4
ok 1 a
ok 3 c`),
    );
    expect(doc.errors).toContain('result 3 out of order (expected 2)');
    expect(doc.errors).toContain('plan 1..4 but 2 result(s)');
    expect(summarize(doc)).toMatchObject({ total: 2, missing: 2, ok: false });
  });

  it('reports a subtest that never got its result line (a crashed test)', () => {
    const doc = parseKtap(
      lines(`
KTAP version 1
1..1
# Subtest: crashy
    KTAP version 1
    1..3
    ok 1 first`),
    );
    expect(doc.results).toEqual([]);
    expect(doc.errors.join('\n')).toMatch(/subtest crashy without a result line/);
    expect(summarize(doc)).toMatchObject({ missing: 1, ok: false });
  });

  it('does not call a parent ok whose passing result hides failing subtests', () => {
    const doc = parseKtap(
      lines(`
KTAP version 1
1..1
    KTAP version 1
    1..1
    not ok 1 inner
ok 1 outer`),
    );
    expect(summarize(doc)).toMatchObject({ passed: 1, failed: 0, ok: false });
  });

  it('accepts TAP version 13 and a document without a version line', () => {
    expect(parseKtap(['TAP version 13', '1..1', 'ok 1 x']).version).toBe(13);
    const bare = parseKtap(['noise', '1..1', 'ok 1 x']);
    expect(bare.version).toBeNull();
    expect(summarize(bare).ok).toBe(true);
  });

  it('returns an empty document with an error when there is no KTAP', () => {
    const doc = parseKtap(['just', 'kernel', 'noise', 'ok but not a result']);
    expect(doc.results).toEqual([]);
    expect(doc.errors).toEqual(['no KTAP output']);
    expect(summarize(doc).ok).toBe(false);
  });

  it('splits consecutive top-level documents', () => {
    const docs = parseKtapDocuments(lines(`
KTAP version 1
1..1
ok 1 first-doc
KTAP version 1
1..2
ok 1 a
not ok 2 b`));
    expect(docs).toHaveLength(2);
    expect(docs[0].results.map((r) => r.name)).toEqual(['first-doc']);
    expect(docs[1].results.map((r) => r.name)).toEqual(['a', 'b']);
    expect(docs.every((d) => d.errors.length === 0)).toBe(true);
  });

  it('handles \\r and trailing spaces from a serial console', () => {
    const doc = parseKtap(['KTAP version 1\r', '1..1  ', 'ok 1 - x  \r']);
    expect(doc.results[0].name).toBe('x');
    expect(doc.errors).toEqual([]);
  });
});
