#!/bin/sh
# mic-scif: with the card booted, the host SCIF driver sees node 1 as a live
# peer (scif_dev: "Total Nodes 2", node 1 Running; scif_peer-dev1 on
# scif_peer_bus), host programs on /dev/scif find the card's echo service on
# port 7 (also a 256 KiB stream through the 4 KiB rings) and get ECONNREFUSED from an unbound card port, a card service
# connects to a host listener on port 3000, a connection to card port 9
# makes the card leave SCIF on its own (SCIF_EXIT from the card, as for a
# COSM shutdown: the host removes peer 1 and answers SCIF_EXIT_ACK), and
# `reset` then brings the card back to `ready` without waiting on SCIF.
# Needs the card services of guest-tests/scif.test.ts.
. /opt/vphi/lib/mic-lib.sh

plan 12

set_boot_attrs
if err=$(write_attr state boot); then pass boot-write; else fail boot-write "echo boot > state: $err"; fi

# The card publishes its queue pair at once; the host's first poll is 1 s after scif_probe().
d=/sys/kernel/debug/scif/scif_dev
i=0
while [ $i -lt 60 ] && ! grep -q 'Total Nodes 2' $d 2>/dev/null; do sleep 0.5; i=$((i + 1)); done
if grep -q 'Total Nodes 2' $d && grep -q '^1[[:space:]]*Running' $d; then pass node-1-running; else fail node-1-running "$(cat $d 2>&1)"; fi
if [ -e /sys/bus/scif_peer_bus/devices/scif_peer-dev1 ]; then pass scif-peer-dev1; else fail scif-peer-dev1 "$(ls /sys/bus/scif_peer_bus/devices 2>&1)"; fi

# scif_get_node_ids(): two nodes online, this one 0.
expect get-nodeids "$(vphi-scif nodeids)" "len 2 self 0"

expect echo-from-card "$(vphi-scif connect 1 7 hello-card)" "got hello-card"
# 256 KiB through 4 KiB endpoint rings both ways: flow control by CLIENT_SENT / CLIENT_RCVD.
expect stream-256k "$(vphi-scif stream 1 7 262144)" "stream 262144 ok"
# 16 host programs at once, each with its own connection to the echo.
i=1
while [ $i -le 16 ]; do vphi-scif connect 1 7 "many-$i" > /tmp/scif-many-$i & i=$((i + 1)); done
wait
bad=""
i=1
while [ $i -le 16 ]; do [ "$(cat /tmp/scif-many-$i)" = "got many-$i" ] || bad="$bad $i:$(cat /tmp/scif-many-$i)"; i=$((i + 1)); done
if [ -z "$bad" ]; then pass sixteen-at-once; else fail sixteen-at-once "$bad"; fi

expect unbound-port-refused "$(vphi-scif connect 1 999 x)" "connect errno 111"

r=$(vphi-scif accept 3000 9)
case "$r" in
  "from node 1 port "*": from-card") pass card-connects-to-host ;;
  *) fail card-connects-to-host "$r" ;;
esac

# Card port 9 makes the card exit; the host's endpoint is then reset under it.
vphi-scif connect 1 9 bye >/dev/null
i=0
while [ $i -lt 60 ] && [ -e /sys/bus/scif_peer_bus/devices/scif_peer-dev1 ]; do sleep 0.5; i=$((i + 1)); done
if grep -q 'Total Nodes 1' $d && [ ! -e /sys/bus/scif_peer_bus/devices/scif_peer-dev1 ]; then
  pass card-initiated-exit
else
  fail card-initiated-exit "$(cat $d 2>&1)" "$(ls /sys/bus/scif_peer_bus/devices 2>&1)"
fi

write_attr state reset
if took=$(wait_state ready); then
  diag "ready ${took} s after the reset write"
  pass reset-ready
else
  fail reset-ready "$took" "$(dmesg | tail -20)"
fi

errs=$(klog_grep "$MIC_ERRORS|scif_qp_response err|SCIFEP_MAGIC mismatch|Unknown message")
if [ -z "$errs" ]; then pass no-driver-errors; else fail no-driver-errors "$errs"; fi

finish
