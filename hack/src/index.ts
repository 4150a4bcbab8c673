export * from './apply-manifests.js';
export * from './control-plane.js';
