// One jest run covers every workspace. TypeScript is compiled by swc to ES modules, since
// @kubernetes/client-node is ESM; run through `npm run jest` (node --experimental-vm-modules).
const swc = [
  '@swc/jest',
  { jsc: { target: 'es2022', parser: { syntax: 'typescript' } }, module: { type: 'es6' } },
];

export default {
  testEnvironment: 'node',
  extensionsToTreatAsEsm: ['.ts'],
  transform: { '^.+\\.ts$': swc },
  moduleNameMapper: {
    '^@kova/([a-z-]+)$': '<rootDir>/$1/src/index.ts',
    '^(\\.{1,2}/.*)\\.js$': '$1',
  },
  testMatch: ['<rootDir>/*/src/**/*.test.ts', '<rootDir>/e2e/**/*.test.ts'],
  testPathIgnorePatterns: ['/node_modules/', '/dist/'],
  globalSetup: '<rootDir>/hack/jest/global-setup.mjs',
  globalTeardown: '<rootDir>/hack/jest/global-teardown.mjs',
  testTimeout: 120_000,
  // One suite at a time: the suites start real control planes, libvirt domains and bursts of
  // API writes, and on two cores they would distort each other's timings.
  maxWorkers: 1,
};
