/**
 * A vphi subcommand: its options declared once (src/cli/options.ts), its
 * usage generated from them, `-h`/`--help` answered before anything runs.
 */
import { parseOptions, UsageError, type OptionSpec, type OptionSpecs } from './args.ts';

export const HELP_OPTION = {
  help: { type: 'boolean', short: 'h', help: 'print this usage and exit' },
} as const satisfies OptionSpecs;

export type Parsed<O extends OptionSpecs> = ReturnType<typeof parseOptions<O>>;

export interface CommandSpec<O extends OptionSpecs> {
  name: string;
  /** One line for the command list. */
  summary: string;
  /** Positional operands in the usage (e.g. "FILE"); none when absent. */
  operands?: string;
  options: O & typeof HELP_OPTION;
  /** More lines after the option list. */
  notes?: string;
  run(p: Parsed<O & typeof HELP_OPTION>): Promise<number>;
}

export interface Command {
  name: string;
  summary: string;
  synopsis: string;
  usage: string;
  /** Parse `args` (after the command name) and run; `--help` prints the usage to stdout, status 0. */
  run(args: string[]): Promise<number>;
}

export function defineCommand<O extends OptionSpecs>(spec: CommandSpec<O>): Command {
  const options: OptionSpecs = spec.options;
  const synopsis = wrap(`vphi ${spec.name}`, [
    ...(spec.operands ? [spec.operands] : []),
    ...Object.entries(options).filter(([k]) => k !== 'help').map(([k, o]) => (o.required ? flag(k, o, false) : `[${flag(k, o, false)}]`) + (o.multiple ? '...' : '')),
  ]);
  const rows = Object.entries(options).map(([k, o]) => [flag(k, o, true), o.help] as const);
  const width = Math.max(...rows.map(([f]) => f.length));
  const usage = [
    `usage: ${synopsis.replace(/\n/g, '\n       ')}`,
    '',
    `${spec.summary}.`,
    '',
    ...rows.map(([f, h]) => `  ${f.padEnd(width)}  ${h}`),
    ...(spec.notes ? ['', spec.notes] : []),
  ].join('\n');
  return {
    name: spec.name,
    summary: spec.summary,
    synopsis,
    usage,
    async run(args) {
      const p = parseOptions(args, spec.options, !!spec.operands);
      if ((p.values as { help?: boolean }).help) {
        process.stdout.write(`${usage}\n`);
        return 0;
      }
      for (const [k, o] of Object.entries(options)) {
        if (o.required && (p.values as Record<string, unknown>)[k] === undefined) throw new UsageError(`${spec.name} needs ${flag(k, o, false)}`);
      }
      return spec.run(p);
    },
  };
}

/** `-v, --verbose`, `--trace FILE` (long), `-v` / `--trace FILE` (short form for the synopsis). */
function flag(name: string, o: OptionSpec, long: boolean): string {
  const v = o.type === 'string' ? ` ${o.value ?? 'VALUE'}` : '';
  if (!long && o.short && o.type === 'boolean') return `-${o.short}`;
  return `${long && o.short ? `-${o.short}, ` : ''}--${name}${v}`;
}

/** `head word word ...` wrapped at 78 columns, continuation lines under the first word. */
function wrap(head: string, words: string[]): string {
  const indent = ' '.repeat(head.length + 1);
  const lines = [head];
  for (const w of words) {
    const last = lines.length - 1;
    if (lines[last].length + 1 + w.length > 78 && lines[last] !== head && lines[last].trim()) lines.push(`${indent}${w}`);
    else lines[last] += ` ${w}`;
  }
  return lines.join('\n');
}
