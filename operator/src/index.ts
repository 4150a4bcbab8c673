// What other packages (the benchmarks) use of the operator: the scheduler, as a library.
export { selectHost, type Decision, type SchedulerOptions } from './scheduler/scheduler.js';
export type { HostState, RequestSpec, Resources, WeigherMultipliers } from './scheduler/types.js';
