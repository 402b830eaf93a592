/**
 * vphi: the command line.
 *
 *   vphi serve  [--socket-path PATH | --fd N] [--aperture SIZE] [--trace FILE] [-v]
 *   vphi boot   [--kernel FILE] [--initrd FILE] [--append TEXT] [--memory SIZE]
 *               [--aperture SIZE] [--trace FILE] [--socket-path PATH] [-v]
 *   vphi trace  FILE [--reg NAME]... [--block NAME]... [--kind KIND]...
 *   vphi --print-capabilities
 *
 * It follows the vhost-user/vfio-user backend conventions (--socket-path,
 * --fd, --print-capabilities, -v). A bad argument gets one clear line and
 * exit status 2.
 */
import { parseArgs } from 'node:util';
import { readFileSync } from 'node:fs';
import { UsageError, parseIntArg, parseSize } from './args.ts';
import { formatTrace } from '../trace/format.ts';
import { X100_IDENTITY, MSIX_VECTORS, DEFAULT_APERTURE_SIZE } from '../../device/x100/pci/identity.ts';

const USAGE = `usage:
  vphi serve  [--socket-path PATH | --fd N] [--aperture SIZE] [--trace FILE] [-v]
  vphi boot   [--kernel FILE] [--initrd FILE] [--append TEXT] [--memory SIZE]
              [--aperture SIZE] [--trace FILE] [--socket-path PATH] [-v]
  vphi trace  FILE [--reg NAME]... [--block NAME]... [--kind KIND]...
  vphi --print-capabilities

  serve   serve the emulated Xeon Phi x100 card on a vfio-user socket
  boot    serve the card and boot a QEMU guest with it (TCG); the Debian guest
          kernel by default, a MIC kernel with MIC_GUEST_KERNEL or --kernel
  trace   pretty-print a trace file written with --trace, filtered by
          register (SPAD2, DSTAT*), block (spad, sbox-intr) or kind (mmio,
          cfg, irq, dma, card)

  SIZE is bytes or 512M / 1G / 0x20000000. --aperture is BAR0 (default ${DEFAULT_APERTURE_SIZE >> 20}M).`;

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

async function main(argv: string[]): Promise<number> {
  if (argv.includes('--print-capabilities')) {
    process.stdout.write(JSON.stringify(capabilities()) + '\n');
    return 0;
  }
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === '-h' || cmd === '--help' || cmd === 'help') {
    process.stdout.write(USAGE + '\n');
    return cmd ? 0 : 2;
  }
  switch (cmd) {
    case 'serve': {
      const { values } = parse(rest, {
        'socket-path': { type: 'string' },
        fd: { type: 'string' },
        aperture: { type: 'string' },
        trace: { type: 'string' },
        verbose: { type: 'boolean', short: 'v' },
      });
      if (values['socket-path'] && values.fd) throw new UsageError('--socket-path and --fd are alternatives: give one');
      if (!values['socket-path'] && !values.fd) throw new UsageError('serve needs --socket-path PATH or --fd N');
      const { serve } = await import('./serve.ts');
      return serve({
        socketPath: values['socket-path'],
        fd: values.fd !== undefined ? parseIntArg(values.fd, '--fd') : undefined,
        apertureSize: values.aperture ? parseSize(values.aperture, '--aperture') : undefined,
        trace: values.trace,
        verbose: !!values.verbose,
      });
    }
    case 'boot': {
      const { values } = parse(rest, {
        kernel: { type: 'string' },
        initrd: { type: 'string' },
        append: { type: 'string' },
        memory: { type: 'string' },
        aperture: { type: 'string' },
        trace: { type: 'string' },
        'socket-path': { type: 'string' },
        verbose: { type: 'boolean', short: 'v' },
      });
      const { boot } = await import('./boot.ts');
      return boot({
        kernel: values.kernel,
        initrd: values.initrd,
        append: values.append,
        memoryMiB: values.memory ? Math.floor(parseSize(values.memory.match(/^\d+$/) ? `${values.memory}M` : values.memory, '--memory') / (1 << 20)) : undefined,
        apertureSize: values.aperture ? parseSize(values.aperture, '--aperture') : undefined,
        trace: values.trace,
        socketPath: values['socket-path'],
        verbose: !!values.verbose,
      });
    }
    case 'trace': {
      const { values, positionals } = parse(
        rest,
        {
          reg: { type: 'string', multiple: true },
          block: { type: 'string', multiple: true },
          kind: { type: 'string', multiple: true },
        },
        true,
      );
      if (positionals.length !== 1) throw new UsageError('trace needs exactly one FILE');
      let text: string;
      try {
        text = readFileSync(positionals[0], 'utf8');
      } catch (e) {
        throw new UsageError(`cannot read trace file ${positionals[0]}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
      }
      const split = (v?: string[]) => v?.flatMap((x) => x.split(',')).filter(Boolean);
      const { lines, bad } = formatTrace(text, { regs: split(values.reg), blocks: split(values.block), kinds: split(values.kind) });
      process.stdout.write(lines.join('\n') + (lines.length ? '\n' : ''));
      if (bad) process.stderr.write(`vphi: ${bad} malformed line(s) skipped\n`);
      return 0;
    }
    default:
      throw new UsageError(`unknown command "${cmd}" (commands: serve, boot, trace; --help for more)`);
  }
}

type Opts = NonNullable<Parameters<typeof parseArgs>[0]>['options'];

function parse<O extends Opts>(args: string[], options: O, positionals = false) {
  try {
    return parseArgs({ args, options, allowPositionals: positionals, strict: true });
  } catch (e) {
    throw new UsageError((e as Error).message.replace(/\. To specify.*$/s, ''));
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    if (e instanceof UsageError) {
      process.stderr.write(`vphi: ${e.message}\n`);
      process.exitCode = 2;
    } else {
      process.stderr.write(`vphi: ${(e as Error).message ?? String(e)}\n`);
      process.exitCode = 1;
    }
  },
);
