/** The entry of a script: its exit status from main(), one line `NAME: message` on a throw. */
export function runMain(name: string, main: () => Promise<number>): void {
  main().then(
    (c) => (process.exitCode = c),
    (e: unknown) => {
      process.stderr.write(`${name}: ${(e as Error).message}\n`);
      process.exitCode = 1;
    },
  );
}
