export * from './agent.js';
export * from './config.js';
export * from './libvirt/index.js';
export * from './domain/xml.js';
export * from './host/paths.js';
export * from './steps/config-drive.js';
export * from './steps/disks.js';
export * from './steps/network.js';
