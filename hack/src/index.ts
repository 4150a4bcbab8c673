export * from './apply-manifests.js';
export * from './control-plane.js';
export * from './simulated-fleet.js';
export * from './local-kova.js';
export * from './until.js';
export * from './cli/settings.js';
export * from './lab.js';
export * from './lab-outside.js';
