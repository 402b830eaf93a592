#!/bin/sh
# mic-cards [N]: several cards (default 2). Boot every card as mpssd would
# (the attributes and `boot` for mic0..micN-1 in turn), wait until all are
# `online`, then check what the host's SCIF made of them: N+1 nodes, each
# card Running with its scif_peer device, P2P enabled. scif_init() on the
# last card's SCIF_INIT ran scif_p2p_setup(): SCIF_NODE_ADD to every pair,
# which the cards answer with their own queue pairs (card-to-card traffic
# is vphi-scif dial-peer's and the peer-rma service's to prove).
. /opt/vphi/lib/mic-lib.sh

n=${1:-2}
timeout=${VPHI_SCIF_ONLINE_TIMEOUT:-30}
plan $((4 * n + 2))

for k in $(seq 0 $((n - 1))); do
  MIC=/sys/class/mic/mic$k
  MIC_CMDLINE=vphi.card=mic$k
  if err=$(set_boot_attrs) && err=$(write_attr state boot); then
    pass "boot-write-mic$k"
  else
    fail "boot-write-mic$k" "$err" "state '$(attr state)'"
  fi
done
for k in $(seq 0 $((n - 1))); do
  MIC=/sys/class/mic/mic$k
  if took=$(wait_state online "$timeout"); then
    diag "mic$k online after ${took} s more"
    pass "online-mic$k"
  else
    fail "online-mic$k" "$took" "shutdown_status '$(attr shutdown_status)'" "$(dmesg | tail -20)"
  fi
done

d=/sys/kernel/debug/scif/scif_dev
if grep -q "Total Nodes $((n + 1))" $d 2>/dev/null; then pass "total-nodes-$((n + 1))"; else fail "total-nodes-$((n + 1))" "$(cat $d 2>&1)"; fi
for k in $(seq 1 "$n"); do
  if grep -q "^$k[[:space:]]*Running" $d; then pass "node-$k-running"; else fail "node-$k-running" "$(cat $d 2>&1)"; fi
  if [ -e /sys/bus/scif_peer_bus/devices/scif_peer-dev$k ]; then pass "scif-peer-dev$k"; else fail "scif-peer-dev$k" "$(ls /sys/bus/scif_peer_bus/devices 2>&1)"; fi
done
p2p=$(cat /sys/kernel/debug/scif/p2p_enable 2>&1)
diag "p2p_enable: $p2p"
if [ "$p2p" = Y ] || [ "$p2p" = 1 ]; then pass p2p-enabled; else fail p2p-enabled "p2p_enable reads '$p2p'"; fi

finish
