// Two hypervisor nodes that are really apart, with real QEMU guests. Locally they are lab-a
// and lab-b of a node lab (each its own namespaces, libvirtd, agent, bridges and state dir),
// and one control plane, operator and lab serve every scenario of this file, each leaving the
// nodes as it found them: placement (spreading, anti-affinity), rescheduling after a failed
// build, Networks spanning both nodes (overlay, egress to a host the scenario adds to the lab,
// isolation), image faults, process faults (operator, agent, libvirtd, QEMU, API server), and a
// whole node partitioned and killed. Against a given cluster (KOVA_E2E_KUBECONFIG) only
// placement runs: the others break, kill and cut the local stack's processes and nodes.
import { afterAll, beforeAll } from '@jest/globals';
import { local, startTwoNodes, stopTwoNodes } from './two-nodes/context.js';
import { imageFaults } from './two-nodes/image-faults.js';
import { nodeLoss } from './two-nodes/node-loss.js';
import { placement } from './two-nodes/placement.js';
import { processFaults } from './two-nodes/process-faults.js';
import { reschedule } from './two-nodes/reschedule.js';
import { spanningNetworks } from './two-nodes/spanning-networks.js';

beforeAll(startTwoNodes, 300_000);
afterAll(stopTwoNodes, 300_000);

placement();
if (local) {
  reschedule();
  spanningNetworks();
  imageFaults();
  processFaults();
  nodeLoss();
}
