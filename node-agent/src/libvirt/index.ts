export * from './binding.js';
export * from './constants.js';
