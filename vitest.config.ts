import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'device/**/*.test.ts', 'guest-tests/**/*.test.ts', 'scripts/**/*.test.ts', 'test/**/*.test.ts'],
    // Integration tests boot QEMU under TCG; each guest gets its own budget.
    testTimeout: 20_000,
    hookTimeout: 60_000,
    pool: 'forks',
    reporters: ['default'],
  },
});
