#!/bin/sh
# mic-scif-rma-loop [SUBTEST...] [options]: vphi-scif-rma's subtests
# (default: all) against the host's own SCIF loopback node 0, whose RMA
# agent is `vphi-scif-rma serve` on port 2003. The loopback node exists once
# the first SCIF device probed (scif_probe() -> scif_setup_loopback_qp()):
# the card must have been booted. The KTAP document is vphi-scif-rma's; the
# agent's own output follows as diagnostics.
. /opt/vphi/lib/mic-lib.sh

log=/tmp/scif-rma-serve.$$
vphi-scif-rma serve >"$log" 2>&1 &
pid=$!
i=0
while ! grep -q ' ready$' "$log" 2>/dev/null && [ "$i" -lt 50 ]; do
  sleep 0.1
  i=$((i + 1))
done
vphi-scif-rma --node 0 "$@"
rc=$?
kill "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
echo "# card state '$(attr state)'; loopback agent:"
sed 's/^/# serve: /' "$log"
rm -f "$log"
exit "$rc"
