export * from './agent.js';
export * from './config.js';
export * from './libvirt/index.js';
