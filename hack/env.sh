# Sourced by kova's scripts: Go on PATH, the cached control-plane binaries first on PATH.
[ -d /usr/local/go/bin ] && export PATH="/usr/local/go/bin:$PATH"
export KOVA_CACHE="${KOVA_CACHE:-$HOME/.cache/kova}"
export PATH="$KOVA_CACHE/bin:$PATH"
