#!/usr/bin/env bash
# The first process (pid 1) of one lab node: hack/src/lab.ts starts it with
#   setpriv --pdeathsig KILL -- unshare --net --mount --propagation private --pid --fork
#     --kill-child=SIGKILL --mount-proc -- bash node-init.sh NODE_DIR
# so it owns the node's network, mount and pid namespaces. It gives the node its own libvirt
# directories and sysfs, then only reaps: the daemons, the agent and every QEMU of the node are
# started into these namespaces from outside (nsenter) and, being in this pid namespace, die
# with this process — which is how a node is killed whole, and why nothing of a node outlives
# a starter killed with -9 (its pdeathsig kills unshare, whose --kill-child kills us).
set -euo pipefail
node_dir=$1

# The node's own view of /sys: libvirt and the agent read bridges and taps from sysfs, which
# shows the network namespace of whoever mounted it. It also hides the host's cgroup
# hierarchies, so the node's libvirtd creates no cgroups there that a killed node would leave.
mount -t sysfs sysfs /sys
# Runtime state (sockets, pid files) is lost when a node dies, as on a host that lost power.
mount -t tmpfs -o mode=0755 tmpfs /run/libvirt
# Persistent state is the node's own directory, as a host's disk would be.
for d in lib log cache; do
  mount --bind "$node_dir/libvirt/$d" "/var/$d/libvirt"
done
mount --bind "$node_dir/libvirt/etc" /etc/libvirt
ip link set lo up

echo ready
# Pid 1 of the namespace: orphaned daemons and QEMUs are reparented here, and libvirt takes a
# QEMU that is a zombie for alive, so reap them. TERM from outside ends the node.
trap 'exit 0' TERM
while :; do
  sleep 1 &
  wait $! || true
done
