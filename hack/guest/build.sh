#!/usr/bin/env bash
# Builds kova's test guest from Debian packages only: Debian's kernel and a busybox initramfs
# holding the modules it needs (virtio networking and disk, SATA CD-ROM, ISO 9660) and init.sh.
# Output (cached; rebuilt only when this script, init.sh or a package version changes):
#   $KOVA_CACHE/guest/<key>/{vmlinuz,initrd.img,root.qcow2,image.yaml}
# Prints the output directory.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../lib/apt.sh"
ensure_packages cpio kmod qemu-utils
cache=${KOVA_CACHE:-$HOME/.cache/kova}
kernel_pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
[ -n "$kernel_pkg" ] || { apt-get update -qq; kernel_pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}'); }
versions="$kernel_pkg=$(apt-cache policy "$kernel_pkg" | awk '/Candidate/{print $2}') busybox-static=$(apt-cache policy busybox-static | awk '/Candidate/{print $2}')"
key=$(printf '%s\n' "$versions" | cat - "$here/build.sh" "$here/init.sh" | sha256sum | cut -c1-16)
out="$cache/guest/$key"
if [ -f "$out/image.yaml" ]; then echo "$out"; exit 0; fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download -q "$kernel_pkg" busybox-static >/dev/null 2>&1)
mkdir -p "$work/kernel" "$work/busybox" "$work/root"/{bin,proc,sys,dev,etc,lib/modules}
dpkg-deb -x "$work"/linux-image-*.deb "$work/kernel"
dpkg-deb -x "$work"/busybox-static_*.deb "$work/busybox"
cp "$work/busybox/bin/busybox" "$work/root/bin/busybox"
cp "$here/init.sh" "$work/root/init"
chmod 755 "$work/root/init"

moddir=$(echo "$work"/kernel/lib/modules/*)
# The package leaves modules.dep to its install hooks, which we do not run.
/sbin/depmod -b "$work/kernel" "$(basename "$moddir")"
# The modules to load and everything they depend on, dependencies first (modules.dep order).
wanted="virtio_net virtio_blk virtio_pci ahci sr_mod isofs button evdev"
order=()
add() {
  local m=$1 path deps d
  path=$(awk -F: -v m="/$m.ko" 'index($1, m) && substr($1, length($1) - length(m) + 1) == m {print $1; exit}' "$moddir/modules.dep")
  [ -n "$path" ] || return 0
  for seen in "${order[@]:-}"; do [ "$seen" = "$path" ] && return 0; done
  deps=$(awk -F': ' -v p="$path" '$1 == p {print $2}' "$moddir/modules.dep")
  for d in $deps; do add "$(basename "$d" .ko)"; done
  order+=("$path")
}
for m in $wanted; do add "$m"; done
for p in "${order[@]}"; do
  mkdir -p "$work/root/lib/modules/$(dirname "$p")"
  cp "$moddir/$p" "$work/root/lib/modules/$p"
  echo "$p" >> "$work/root/etc/modules.order"
done

mkdir -p "$out.tmp"
cp "$work"/kernel/boot/vmlinuz-* "$out.tmp/vmlinuz"
(cd "$work/root" && find . | cpio -o -H newc --quiet | gzip -9) > "$out.tmp/initrd.img"
qemu-img create -q -f qcow2 "$out.tmp/root.qcow2" 64M
sha() { sha256sum "$1" | cut -c1-64; }
cat > "$out.tmp/image.yaml" <<YAML
# kova's test guest (hack/guest/build.sh): Debian's kernel and a busybox initramfs booted
# directly; it reads its config drive, takes its address and answers HTTP on port 80.
apiVersion: compute.kova.dev/v1alpha1
kind: Image
metadata:
  name: kova-guest
spec:
  source: $out/root.qcow2
  format: qcow2
  sha256: "$(sha "$out.tmp/root.qcow2")"
  architecture: x86_64
  minMemoryMiB: 96
  kernel:
    source: $out/vmlinuz
    sha256: "$(sha "$out.tmp/vmlinuz")"
  initrd:
    source: $out/initrd.img
    sha256: "$(sha "$out.tmp/initrd.img")"
  cmdline: console=ttyS0 quiet panic=-1
YAML
rm -rf "$out"
mv "$out.tmp" "$out"
chmod -R a+rX "$cache/guest"
echo "$out"
