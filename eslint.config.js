import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules/', 'drizzle/', 'bench/results/', 'chaos/results/', '.run/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-console': 'error',
      'no-control-regex': 'off',
    },
  },
  {
    // Only config.ts reads the environment.
    files: ['src/**/*.ts'],
    ignores: ['src/config.ts'],
    rules: {
      'no-restricted-properties': ['error', { object: 'process', property: 'env', message: 'read configuration from src/config.ts' }],
    },
  },
  {
    // The domain is pure: no I/O libraries.
    files: ['src/domain/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        { patterns: ['express', 'bullmq', 'pg', 'kafkajs', 'ioredis', 'drizzle-orm', 'drizzle-orm/*', '../db/*', '../api/*', '../workers/*', '../events/*'] },
      ],
    },
  },
  {
    // Tests read loosely typed JSON responses.
    files: ['scripts/**', 'test/**', 'bench/**', 'chaos/**'],
    rules: { 'no-console': 'off', '@typescript-eslint/no-explicit-any': 'off' },
  },
);
