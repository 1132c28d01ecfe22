// Lint for the map's own JavaScript (the libraries are built files, not linted).
import js from '@eslint/js';

const browser = {
  window: 'readonly', document: 'readonly', location: 'readonly', sessionStorage: 'readonly', fetch: 'readonly',
  setTimeout: 'readonly', clearTimeout: 'readonly', setInterval: 'readonly', clearInterval: 'readonly', AbortController: 'readonly',
  TextDecoderStream: 'readonly', console: 'readonly',
};
const node = { process: 'readonly', console: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', fetch: 'readonly', URL: 'readonly' };
// Browser tests pass functions that run in the page.
const inPage = { window: 'readonly', document: 'readonly', Event: 'readonly' };

export default [
  js.configs.recommended,
  { files: ['src/**/*.js'], languageOptions: { ecmaVersion: 2023, sourceType: 'module', globals: browser } },
  { files: ['build.mjs', 'eslint.config.js'], languageOptions: { ecmaVersion: 2023, sourceType: 'module', globals: node } },
  { files: ['test/**/*.mjs'], languageOptions: { ecmaVersion: 2023, sourceType: 'module', globals: { ...node, ...inPage } } },
];
