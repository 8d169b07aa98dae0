// `npm run lint` (part of `npm test`): the rules the code reviews enforce, checked with type information.
// Only the repo's own rules, no preset: each one here is a rule of the project's style guide.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'eslint/config';
import tseslint from 'typescript-eslint';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export default defineConfig(
  { ignores: ['dist/**', 'node_modules/**'] },
  {
    files: ['**/*.ts'],
    languageOptions: {
      parser: tseslint.parser,
      parserOptions: { projectService: true, tsconfigRootDir: repoRoot },
    },
    plugins: { '@typescript-eslint': tseslint.plugin },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      eqeqeq: 'error',
    },
  },
  {
    // Plain JavaScript (fixture workers): no type information, the rules that need none.
    files: ['**/*.js', '**/*.mjs', '**/*.cjs'],
    rules: { eqeqeq: 'error' },
  },
  {
    // The server's stdout is the JSON-RPC channel: src logs through the injected Logger only.
    files: ['src/**/*.ts'],
    rules: { 'no-console': 'error' },
  },
);
