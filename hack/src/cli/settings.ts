// What `npm start` runs its one-hypervisor kova with, shared with the suites that check what a
// user sees there.
export const LOCAL_RUN = {
  agentEnv: { KOVA_SHUTDOWN_TIMEOUT_SECONDS: '5' },
  // One hypervisor: a build that failed there has nowhere else to go, so the Instance fails
  // with the agent's reason at once instead of waiting in Scheduling on NoValidHost.
  operatorEnv: { KOVA_MAX_ATTEMPTS: '1' },
  restartCrashed: true,
};
