/**
 * vphi: the command line, and the composition root: only src/cli/ puts
 * the card (device/), the guest images (src/guest/) and QEMU (src/qemu/)
 * together.
 *
 * It follows the vhost-user/vfio-user backend conventions (--socket-path,
 * --fd, --print-capabilities, -v). `vphi --help` and `vphi COMMAND --help`
 * print the usage to stdout; a bad argument gets one clear line and exit
 * status 2. A new subcommand is one more defineCommand() in COMMANDS; an
 * option shared by serve and boot goes into CARD_OPTIONS (options.ts).
 */
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { X100_IDENTITY, MSIX_VECTORS, MMIO_BAR, MMIO_BAR_SIZE } from '../../device/x100/pci/identity.ts';
import { formatEvent, parseTrace } from '../trace/format.ts';
import { UsageError, commaList, parseIntArg, parseMiB } from './args.ts';
import { defineCommand, HELP_OPTION, type Command } from './command.ts';
import { CARD_OPTIONS, cardSettings, FAULTS_NOTE, SIZE_NOTE } from './options.ts';

export function capabilities(): Record<string, unknown> {
  return {
    type: 'vfio-user-pci',
    device: `${hex4(X100_IDENTITY.vendorId)}:${hex4(X100_IDENTITY.deviceId)}`,
    revision: X100_IDENTITY.revision,
    features: ['msix', 'intx', 'pcie', 'memfd-bar0', 'trace'],
    msixVectors: MSIX_VECTORS,
  };
}

function hex4(v: number): string {
  return v.toString(16).padStart(4, '0');
}

const { 'socket-path': SOCKET_PATH, ...CARD_REST } = CARD_OPTIONS;

const serve = defineCommand({
  name: 'serve',
  summary: 'serve the emulated Xeon Phi x100 card on a vfio-user socket',
  options: {
    'socket-path': SOCKET_PATH,
    fd: { type: 'string', value: 'N', help: 'or: serve on the listening UNIX socket inherited as fd N' },
    ...CARD_REST,
    ...HELP_OPTION,
  },
  notes: `${SIZE_NOTE}\n${FAULTS_NOTE}`,
  async run({ values }) {
    if (values['socket-path'] && values.fd) throw new UsageError('--socket-path and --fd are alternatives: give one');
    if (!values['socket-path'] && !values.fd) throw new UsageError('serve needs --socket-path PATH or --fd N');
    const card = cardSettings(values);
    const fd = values.fd !== undefined ? parseIntArg(values.fd, '--fd') : undefined;
    return (await import('./serve.ts')).serve({ ...card, fd });
  },
});

const boot = defineCommand({
  name: 'boot',
  summary: 'serve the card and boot a QEMU guest (TCG) with it, the console on this terminal',
  options: {
    kernel: { type: 'string', value: 'FILE', help: 'the guest kernel (default: $MIC_GUEST_KERNEL, else the Debian one)' },
    initrd: { type: 'string', value: 'FILE', help: "the initramfs (default: vphi's, with the guest programs)" },
    append: { type: 'string', value: 'TEXT', help: 'more kernel command line' },
    memory: { type: 'string', value: 'SIZE', help: 'guest RAM (default 512M; a plain number is MiB)' },
    ...CARD_OPTIONS,
    ...HELP_OPTION,
  },
  notes:
    'The Debian kernel has no MIC drivers; build a MIC kernel with scripts/build-guest-kernel.\n' +
    'The kernel command line always gets initcall_blacklist=cosm_client_init (a built-in\n' +
    "MIC stack's cosm_client_init() freezes the guest otherwise), the default initramfs the\n" +
    'MIC firmware files. Without --socket-path the socket goes into a private directory.\n' +
    `${SIZE_NOTE}\n${FAULTS_NOTE}`,
  async run({ values }) {
    const card = cardSettings(values);
    const memoryMiB = values.memory !== undefined ? parseMiB(values.memory, '--memory') : undefined;
    return (await import('./boot.ts')).boot({ ...card, kernel: values.kernel, initrd: values.initrd, append: values.append, memoryMiB });
  },
});

const trace = defineCommand({
  name: 'trace',
  summary: 'pretty-print a trace file written with --trace, one line per event',
  operands: 'FILE',
  options: {
    reg: { type: 'string', multiple: true, value: 'NAME', help: 'only these registers (SPAD2, DSTAT*; comma-separated or repeated)' },
    block: { type: 'string', multiple: true, value: 'NAME', help: 'only these blocks (spad, sbox-intr, dma)' },
    kind: { type: 'string', multiple: true, value: 'KIND', help: 'only these kinds (mmio, cfg, irq, dma, card, conn, reset, refused)' },
    perfetto: { type: 'string', value: 'OUT', help: 'write a timeline instead: Chrome trace-event JSON for ui.perfetto.dev' },
    coverage: { type: 'boolean', help: 'print the reads and writes of every declared register and field' },
    ...HELP_OPTION,
  },
  notes:
    '--perfetto: one track per DMA channel (descriptors as slices), per interrupt vector, for MMIO\n' +
    '(by register name) and for SCIF messages (flows from request to reply).\n' +
    "--coverage: a field's writes are the writes that change it, its reads its register's reads.",
  async run({ values, positionals }) {
    if (positionals.length !== 1) throw new UsageError('trace needs exactly one FILE');
    const filter = { regs: commaList(values.reg), blocks: commaList(values.block), kinds: commaList(values.kind) };
    if (values.coverage && values.perfetto !== undefined) throw new UsageError('--coverage and --perfetto are alternatives: give one');
    if (values.coverage && (filter.regs?.length || filter.blocks?.length || filter.kinds?.length)) throw new UsageError('--coverage counts every access: it takes no --reg, --block or --kind');
    if (values.perfetto === '') throw new UsageError('--perfetto needs a file name');
    let text: string;
    try {
      text = readFileSync(positionals[0], 'utf8');
    } catch (e) {
      throw new UsageError(`cannot read trace file ${positionals[0]}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    const { events, bad } = parseTrace(text, values.coverage ? {} : filter);
    if (bad) process.stderr.write(`vphi: ${bad} malformed line(s) skipped\n`);
    if (values.perfetto !== undefined) {
      const out = values.perfetto;
      const { toPerfetto } = await import('../trace/perfetto.ts');
      const timeline = toPerfetto(events);
      try {
        writeFileSync(out, JSON.stringify(timeline));
      } catch (e) {
        throw new UsageError(`--perfetto: cannot write ${out}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
      }
      const { events: n, flows } = timeline.otherData;
      process.stderr.write(`vphi: wrote ${out} (${n} events, ${flows} request/reply flows); open it in ui.perfetto.dev\n`);
      return 0;
    }
    if (values.coverage) {
      const { coverage, declared, formatCoverage } = await import('../trace/coverage.ts');
      const { BAR4_BLOCKS } = await import('../../device/x100/card.ts');
      const { RegisterFile } = await import('../regs/file.ts');
      const decls = declared(MMIO_BAR, new RegisterFile('bar4', MMIO_BAR, MMIO_BAR_SIZE, BAR4_BLOCKS).listing());
      process.stdout.write(formatCoverage(coverage(decls, events)).join('\n') + '\n');
      return 0;
    }
    const lines = events.map(formatEvent);
    process.stdout.write(lines.join('\n') + (lines.length ? '\n' : ''));
    return 0;
  },
});

const initramfs = defineCommand({
  name: 'initramfs',
  summary: "write vphi's guest initramfs, e.g. for your own QEMU and vphi serve",
  options: {
    out: { type: 'string', value: 'FILE', required: true, help: "the gzip'd cpio to write" },
    init: { type: 'string', value: 'FILE', help: "the /init script (default: vphi's, src/guest/init.sh)" },
    programs: { type: 'boolean', help: 'add the guest programs scripts/setup built, in /opt/vphi/bin' },
    mic: { type: 'boolean', help: 'add the MIC firmware files and mic-* scripts' },
    add: { type: 'string', multiple: true, value: 'HOST:/GUEST', help: 'add the host file HOST as /GUEST' },
    ...HELP_OPTION,
  },
  async run({ values }) {
    const out = values.out as string; // required
    const files = (values.add ?? []).map((v) => {
      const c = v.lastIndexOf(':');
      if (c <= 0 || !v.slice(c + 1).startsWith('/')) throw new UsageError(`--add wants HOST:/GUEST/PATH, got "${v}"`);
      return { hostPath: v.slice(0, c), path: v.slice(c + 1) };
    });
    const { buildInitramfs, guestProgramFiles } = await import('../guest/initramfs.ts');
    const { INIT_SCRIPT, micGuestFiles } = await import('../guest/image.ts');
    const init = values.init ?? INIT_SCRIPT;
    let initText: string;
    try {
      initText = readFileSync(init, 'utf8');
    } catch (e) {
      throw new UsageError(`--init: cannot read ${init}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    await buildInitramfs({
      out,
      init: initText,
      files: [...(values.programs ? guestProgramFiles() : []), ...(values.mic ? micGuestFiles() : []), ...files],
    });
    process.stderr.write(`vphi: wrote ${out} (${statSync(out).size} bytes)\n`);
    return 0;
  },
});

const ctl = defineCommand({
  name: 'ctl',
  summary: "talk to a running card's control socket: arm a fault, clear faults, show its status",
  operands: 'fault SPEC | clear | status',
  options: {
    'socket-path': { type: 'string', value: 'PATH', required: true, help: "the card's vfio-user socket (its control socket is PATH.ctl)" },
    ...HELP_OPTION,
  },
  notes: FAULTS_NOTE,
  async run({ values, positionals }) {
    const [what, ...rest] = positionals;
    let req: { cmd: string; spec?: string };
    if (what === 'fault' && rest.length === 1) req = { cmd: 'fault', spec: rest[0] };
    else if ((what === 'status' || what === 'clear') && rest.length === 0) req = { cmd: what };
    else throw new UsageError('ctl wants one of: fault SPEC, clear, status');
    const path = values['socket-path'] as string; // required
    const { ctlRequest } = await import('../ctl/client.ts');
    const { ctlPath } = await import('./serve.ts');
    const reply = await ctlRequest(path.endsWith('.ctl') ? path : ctlPath(path), req);
    if (!reply.ok) {
      process.stderr.write(`vphi: ctl ${what}: ${String(reply.error)}\n`);
      return 1;
    }
    if (what === 'fault') {
      const f = reply.fault as { id: number; spec: string };
      process.stdout.write(`fault ${f.id} armed: ${f.spec}\n`);
    } else if (what === 'clear') {
      process.stdout.write(`${String(reply.cleared)} fault(s) disarmed\n`);
    } else {
      // The card, then the serving process's memory (shared by every card it serves).
      process.stdout.write(JSON.stringify({ ...(reply.status as object), process: reply.process }, null, 2) + '\n');
    }
    return 0;
  },
});

const test = defineCommand({
  name: 'test',
  summary: 'run the guest test suites: boot each guest with the card, stream its KTAP, end with a summary',
  options: {
    kernel: { type: 'string', value: 'FILE', help: 'the MIC guest kernel (default: $MIC_GUEST_KERNEL, else ~/.cache/vphi/bzImage)' },
    only: { type: 'string', multiple: true, value: 'NAME', help: 'only these suites (comma-separated or repeated; --list names them)' },
    list: { type: 'boolean', help: 'list the suites and exit' },
    ...HELP_OPTION,
  },
  notes:
    'stdout: KTAP, a subtest per suite holding its guest\'s own KTAP; stderr: a progress line per\n' +
    'guest command and the summary "N passed, N failed, N skipped". Exit status 0 only when\n' +
    'nothing failed. Without a MIC kernel the MIC suites are skipped (SKIP: no MIC guest kernel);\n' +
    'build one with scripts/build-guest-kernel. Each suite is one guest under TCG: minutes each.',
  async run({ values }) {
    const { runTests } = await import('./test.ts');
    return runTests({ kernel: values.kernel, only: values.only, list: values.list });
  },
});

const COMMANDS: readonly Command[] = [serve, boot, trace, initramfs, ctl, test];

function usage(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    'usage:',
    ...COMMANDS.map((c) => c.synopsis.replace(/^/gm, '  ')),
    '  vphi --print-capabilities',
    '',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary.replace(/\n/g, `\n  ${' '.repeat(width)}  `)}`),
    '',
    `vphi COMMAND --help prints the options of one command. ${SIZE_NOTE}`,
  ].join('\n');
}

async function main(argv: string[]): Promise<number> {
  if (argv.includes('--print-capabilities')) {
    process.stdout.write(JSON.stringify(capabilities()) + '\n');
    return 0;
  }
  const [name, ...rest] = argv;
  if (name === undefined) {
    process.stderr.write(`${usage()}\n`);
    return 2;
  }
  if (name === '-h' || name === '--help' || name === 'help') {
    const about = rest[0] !== undefined ? COMMANDS.find((c) => c.name === rest[0]) : undefined;
    if (rest[0] !== undefined && !about) throw new UsageError(`unknown command "${rest[0]}" (commands: ${COMMANDS.map((c) => c.name).join(', ')})`);
    process.stdout.write(`${about ? about.usage : usage()}\n`);
    return 0;
  }
  const command = COMMANDS.find((c) => c.name === name);
  if (!command) throw new UsageError(`unknown command "${name}" (commands: ${COMMANDS.map((c) => c.name).join(', ')}; --help for more)`);
  return command.run(rest);
}

// `vphi trace FILE | head`: a reader that closes the pipe ends the output, not with a stack trace.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(0);
  throw e;
});

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`vphi: ${(e as Error).message ?? String(e)}\n`);
    process.exitCode = e instanceof UsageError ? 2 : 1;
  },
);
