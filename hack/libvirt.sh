#!/usr/bin/env bash
# Makes sure a libvirt daemon with QEMU runs on this machine (there is no systemd here to start
# one): installs the Debian packages if missing, gives /dev/kvm the owner udev would give it,
# and starts virtlogd and libvirtd unless they already run.
set -euo pipefail
source "$(dirname "$0")/lib/apt.sh"
ensure_packages libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients libvirt-dev qemu-system-x86 qemu-utils genisoimage iproute2 nftables pkg-config
# Without udev, /dev/kvm stays root-only: libvirt then finds KVM usable when it probes QEMU
# (as root) and unusable when it checks for the QEMU user, throws its capability cache away
# on every call and re-probes QEMU for most of a minute per domain definition.
if [ -c /dev/kvm ] && getent group kvm >/dev/null; then
  chgrp kvm /dev/kvm && chmod 0660 /dev/kvm
fi
# Whether the host's daemon runs, by the pid file it writes (/run/<name>.pid): `pgrep -x` would
# also see the daemons of lab nodes (hack/lab/), which share our pid namespace but keep their pid
# files in their own /run/libvirt. The pid must name that daemon, in our pid and mount namespace
# (a stale file's pid may have been reused).
host_daemon_runs() {
  local pid
  pid=$(cat "/run/$1.pid" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ] || return 1
  [ "$(readlink "/proc/$pid/ns/pid")" = "$(readlink /proc/self/ns/pid)" ] || return 1
  [ "$(readlink "/proc/$pid/ns/mnt")" = "$(readlink /proc/self/ns/mnt)" ]
}
host_daemon_runs virtlogd || virtlogd -d
if ! host_daemon_runs libvirtd; then
  libvirtd -d
  for _ in $(seq 50); do virsh -c qemu:///system version >/dev/null 2>&1 && break; sleep 0.2; done
fi
virsh -c qemu:///system version >/dev/null 2>&1 || { echo "libvirtd does not answer on qemu:///system" >&2; exit 1; }
