#!/usr/bin/env bash
# Runs one control-plane process so that it can never outlive whoever started it: the process
# gets SIGTERM when its parent dies (even by kill -9), and when its stdin closes, which is how
# the starter asks it to stop. SIGKILL follows a SIGTERM that is ignored for 10 s.
set -u
exec 3<&0
setpriv --pdeathsig TERM -- "$@" </dev/null &
child=$!
watch_stdin() {
  cat <&3 >/dev/null
  kill -TERM "$child" 2>/dev/null || return 0
  for _ in $(seq 100); do kill -0 "$child" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$child" 2>/dev/null
}
watch_stdin &
watcher=$!
trap 'kill -TERM "$child" 2>/dev/null' TERM INT
wait "$child"
rc=$?
# wait returns early when a trapped signal arrives; wait again for the real exit.
while kill -0 "$child" 2>/dev/null; do wait "$child"; rc=$?; done
kill "$watcher" 2>/dev/null
exit "$rc"
