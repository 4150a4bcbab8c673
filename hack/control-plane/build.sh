#!/usr/bin/env bash
# Builds etcd, kube-apiserver, kube-controller-manager, kubectl and helm from the Go module
# proxy at the versions pinned in versions.env, into a cache outside git. A binary is rebuilt
# only when its pinned version changes (the version is part of its path). kube-scheduler, kubelet
# and kube-proxy are built only when asked for (`build.sh kube-scheduler`, as the scheduler
# benchmark does; `build.sh kubelet kube-proxy` for the kubelet node): from the same wrapper
# module and build cache as kube-apiserver, at the same version.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
cache=${KOVA_CACHE:-$HOME/.cache/kova}
bin="$cache/bin"
mkdir -p "$bin"
export CGO_ENABLED=0 GOFLAGS=-mod=mod

log() { printf '{"level":"info","component":"build-control-plane","msg":"%s"}\n' "$*" >&2; }

staging_modules() {
  curl -fsSL "${GOPROXY_BASE:-https://proxy.golang.org}/k8s.io/kubernetes/@v/$KUBERNETES_VERSION.mod" |
    sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p'
}

k8s_wrapper() {
  local dir="$cache/src/kubernetes-$KUBERNETES_VERSION" staging_version="v0.${KUBERNETES_VERSION#v1.}"
  if [ ! -f "$dir/go.mod" ]; then
    mkdir -p "$dir"
    local mods tmp="$dir/go.mod.tmp"
    mods=$(staging_modules)
    [ -n "$mods" ] || { echo "cannot read the staging modules of k8s.io/kubernetes $KUBERNETES_VERSION" >&2; exit 1; }
    {
      printf 'module kova.dev/control-plane\n\ngo 1.25.0\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$KUBERNETES_VERSION"
      for m in $mods; do printf '\t%s => %s %s\n' "$m" "$m" "$staging_version"; done
      printf ')\n'
    } >"$tmp"
    mv "$tmp" "$dir/go.mod"
  fi
  echo "$dir"
}

k8s_ldflags() {
  local minor=${KUBERNETES_VERSION#v1.}; minor=${minor%%.*}
  local date; date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  local f=""
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    f+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    f+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$date"
  done
  echo "-s -w$f"
}

build_k8s() {
  local name=$1 out="$bin/$1-$KUBERNETES_VERSION"
  [ -x "$out" ] && return 0
  log "building $name $KUBERNETES_VERSION (first build on 2 cores takes tens of minutes)"
  local dir; dir=$(k8s_wrapper)
  (cd "$dir" && go build -tags selinux,notest -trimpath -ldflags "$(k8s_ldflags)" -o "$out.tmp" "k8s.io/kubernetes/cmd/$name")
  mv "$out.tmp" "$out"
}

build_simple() {
  local name=$1 module=$2 version=$3 pkg=$4 ldflags=${5:-}
  local out="$bin/$name-$version" dir="$cache/src/$name-$version"
  [ -x "$out" ] && return 0
  log "building $name $version"
  mkdir -p "$dir"
  [ -f "$dir/go.mod" ] || printf 'module kova.dev/%s\n\ngo 1.25.0\n\nrequire %s %s\n' "$name" "$module" "$version" >"$dir/go.mod"
  (cd "$dir" && go build -trimpath -ldflags "-s -w $ldflags" -o "$out.tmp" "$pkg")
  mv "$out.tmp" "$out"
}

link() { ln -sfn "$2" "$bin/$1"; }

targets=${*:-etcd kube-apiserver kube-controller-manager kubectl helm}
for t in $targets; do
  case $t in
    etcd)
      build_simple etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION" go.etcd.io/etcd/server/v3
      link etcd "etcd-$ETCD_VERSION" ;;
    helm)
      build_simple helm helm.sh/helm/v3 "$HELM_VERSION" helm.sh/helm/v3/cmd/helm \
        "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
      link helm "helm-$HELM_VERSION" ;;
    kube-apiserver|kube-controller-manager|kube-scheduler|kubelet|kube-proxy|kubectl)
      build_k8s "$t"
      link "$t" "$t-$KUBERNETES_VERSION" ;;
    *) echo "unknown target: $t" >&2; exit 2 ;;
  esac
done
echo "$bin"
