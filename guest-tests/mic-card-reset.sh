#!/bin/sh
# mic-card-reset K [N]: with N cards online (default 2), reset micK alone.
# The host's scif_disconnect_node() sends SCIF_NODE_REMOVE for node K+1 to
# every other card and waits for their SCIF_NODE_REMOVE_ACKs; the others
# stay online the whole time. Then micK boots again and the host's
# scif_p2p_setup() pairs it with the others anew (SCIF_NODE_ADD).
. /opt/vphi/lib/mic-lib.sh

k=${1:?usage: mic-card-reset K [N]}
n=${2:-2}
timeout=${VPHI_SCIF_ONLINE_TIMEOUT:-30}
node=$((k + 1))
d=/sys/kernel/debug/scif/scif_dev
plan 6

others_online() {
  for j in $(seq 0 $((n - 1))); do
    [ "$j" = "$k" ] && continue
    s=$(cat /sys/class/mic/mic$j/state 2>&1)
    [ "$s" = online ] || { echo "mic$j is '$s'"; return 1; }
  done
  return 0
}

MIC=/sys/class/mic/mic$k
MIC_CMDLINE=vphi.card=mic$k
t0=$(now)
if err=$(write_attr state reset) && took=$(wait_state ready); then
  diag "mic$k ready $(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }') s after the reset write"
  pass "reset-mic$k"
else
  fail "reset-mic$k" "$err" "$took" "$(dmesg | tail -20)"
fi
if why=$(others_online); then pass others-stay-online; else fail others-stay-online "$why"; fi
if ! grep -q "^$node[[:space:]]*Running" $d; then pass "node-$node-gone"; else fail "node-$node-gone" "$(cat $d)"; fi
if err=$(set_boot_attrs) && err=$(write_attr state boot) && took=$(wait_state online "$timeout"); then
  diag "mic$k online again after ${took} s"
  pass "online-again-mic$k"
else
  fail "online-again-mic$k" "$err" "$took" "$(dmesg | tail -20)"
fi
if grep -q "Total Nodes $((n + 1))" $d && grep -q "^$node[[:space:]]*Running" $d; then pass "node-$node-back"; else fail "node-$node-back" "$(cat $d)"; fi
if why=$(others_online); then pass others-still-online; else fail others-still-online "$why"; fi
finish
