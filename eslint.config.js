// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import importX from 'eslint-plugin-import-x';

export default tseslint.config(
  {
    ignores: [
      'dist/**',
      'node_modules/**',
      'src/generated/**',
      'training/**',
      'coverage/**',
      'data/**',
      'eslint.config.js',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: {
        projectService: true,
        tsconfigRootDir: import.meta.dirname,
      },
    },
    plugins: { 'import-x': importX },
    settings: {
      'import-x/resolver': { node: { extensions: ['.ts', '.js'] } },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'import-x/no-cycle': ['error', { maxDepth: Infinity }],
      'no-console': 'error',
    },
  },
  {
    // Command-line entry points and benchmarks may print to the terminal.
    files: ['src/cli/**/*.ts', 'src/bench/**/*.ts', 'scripts/**/*.ts'],
    rules: { 'no-console': 'off' },
  },
  {
    // The domain imports only shared code, the OpenTelemetry API and its own modules (ports included):
    // infrastructure (grpc-js, stores, onnxruntime, the OTel SDK, the bundle loader) sits behind its ports.
    files: ['src/gateway/domain/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              regex: '^(?!\\./[^/]+$|\\.\\./\\.\\./shared/[^/]+$|@opentelemetry/api$|node:events$)',
              message:
                'src/gateway/domain may import only ./*, ../../shared/*, @opentelemetry/api and node:events; reach infrastructure through a port (domain/ports.ts).',
            },
            {
              regex: '^\\.\\./\\.\\./shared/(grpc-status|recommender-proto|proto|transport)\\.js$',
              message:
                'the gRPC status mapper, proto loaders and transport credentials belong to the api layer, not the domain.',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['test/**/*.ts'],
    rules: {
      'no-console': 'off',
      '@typescript-eslint/no-non-null-assertion': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
    },
  },
);
