/**
 * The functions a V8 CPU profile (node --cpu-prof) spent its samples in:
 * self time by function and file, and the share of the profile's wall time
 * that was idle (the process waiting on QEMU and the guest).
 *
 *   node --import tsx scripts/bench/cpuprofile-top.ts [--top N] FILE.cpuprofile...
 *
 * Several files (one per thread, as --cpu-prof writes them) are summed.
 */
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}
interface Profile {
  nodes: Node[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

const args = process.argv.slice(2);
const t = args.indexOf('--top');
const top = t >= 0 ? Number(args.splice(t, 2)[1]) : 25;
if (!args.length || !(top > 0)) {
  process.stderr.write('usage: cpuprofile-top [--top N] FILE.cpuprofile...\n');
  process.exit(2);
}
const self = new Map<string, number>();
let total = 0;
for (const file of args) {
  const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  for (let i = 0; i < p.samples.length; i++) {
    const n = byId.get(p.samples[i]);
    const dt = p.timeDeltas[i + 1] ?? 0;
    if (!n) continue;
    const f = n.callFrame;
    const where = f.url ? `${relative(process.cwd(), f.url.replace(/^file:\/\//, ''))}:${f.lineNumber + 1}` : '';
    const key = `${f.functionName || '(anonymous)'} ${where}`.trim();
    self.set(key, (self.get(key) ?? 0) + dt);
    total += dt;
  }
}
const idle = self.get('(idle)') ?? 0;
const busy = total - idle - (self.get('(program)') ?? 0) - (self.get('(garbage collector)') ?? 0);
const ms = (us: number) => `${(us / 1000).toFixed(0)} ms`;
const pct = (us: number) => `${((100 * us) / total).toFixed(1)}%`;
console.log(`${ms(total)} sampled: idle ${pct(idle)}, JavaScript ${pct(busy)}, GC ${pct(self.get('(garbage collector)') ?? 0)}, native/program ${pct(self.get('(program)') ?? 0)}`);
for (const [k, v] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${pct(v).padStart(6)} ${ms(v).padStart(8)}  ${k}`);
