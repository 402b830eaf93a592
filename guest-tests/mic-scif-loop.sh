#!/bin/sh
# mic-scif-loop [GROUP...]: vphi-scif's client subtests (default: all)
# against the host's own SCIF loopback node 0, served by `vphi-scif serve`
# on node 0 (echo 2000, sink 2001, source 2002, a DIAL-only agent 2003).
# The loopback node exists once the first SCIF device probed
# (scif_probe() -> scif_setup_loopback_qp()): the card must have been
# booted (state booting or online). The KTAP document is vphi-scif's; the
# server's own output follows as diagnostics.
. /opt/vphi/lib/mic-lib.sh

s=$(attr state)
case "$s" in
  online) nodes=2 ;;
  *) nodes=1 ;;
esac
log=/tmp/scif-serve.$$
vphi-scif serve >"$log" 2>&1 &
pid=$!
i=0
while ! grep -q ' ready$' "$log" 2>/dev/null && [ "$i" -lt 50 ]; do
  sleep 0.1
  i=$((i + 1))
done
[ $# -gt 0 ] || set -- all
vphi-scif --node 0 --nodes "$nodes" "$@"
rc=$?
kill "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
echo "# card state '$s'; loopback server:"
sed 's/^/# serve: /' "$log"
rm -f "$log"
exit "$rc"
