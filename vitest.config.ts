import { defineConfig } from 'vitest/config'

// The whole suite runs twice: once per readiness mechanism, so both code
// paths are tested on every run (docs/design.md "Readiness"). Each project sets
// FDPASS_REACTOR in the environment of its test processes, and the child
// processes the tests spawn inherit it.
const reactors = ['uv', 'thread'] as const

export default defineConfig({
  test: {
    pool: 'forks', // native addon: one process per test file, never threads
    testTimeout: 20_000,
    hookTimeout: 20_000,
    teardownTimeout: 10_000,
    reporters: ['default'],
    projects: [
      ...reactors.map((reactor) => ({
        extends: true,
        test: {
          name: reactor,
          include: ['__test__/**/*.test.ts'],
          // Packaging, workflow, documentation and demo checks do not depend on the reactor: once is enough.
          exclude: reactor === 'uv' ? [] : ['__test__/package.test.ts', '__test__/docs.test.ts', '__test__/demo.test.ts'],
          env: { FDPASS_REACTOR: reactor },
        },
      })),
      {
        // The published declarations, as users' TypeScript sees them: tsc
        // checks __test__/types (expectTypeOf, and @ts-expect-error lines
        // that must stay errors).
        extends: true,
        test: {
          name: 'types',
          include: [],
          typecheck: {
            enabled: true,
            only: true,
            include: ['__test__/types/*.test-d.ts'],
            tsconfig: '__test__/types/tsconfig.json',
            ignoreSourceErrors: false,
          },
        },
      },
    ],
  },
})
