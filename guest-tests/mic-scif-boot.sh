#!/bin/sh
# mic-scif-boot: what mpssd does to start the card (bootmode, firmware,
# ramdisk, cmdline, `boot`), then wait for `online`: the card's SCIF node is
# up and its COSM client connected to the host's COSM listener on port 201
# (cosm_scif_server() -> cosm_set_online()). Timeout VPHI_SCIF_ONLINE_TIMEOUT
# (30 s). A card that stays `booting` fails state-online with the state and
# the kernel log tail, or, without VPHI_SCIF_STRICT=1, skips it with "card
# SCIF node not online".
. /opt/vphi/lib/mic-lib.sh

timeout=${VPHI_SCIF_ONLINE_TIMEOUT:-30}
plan 5

expect ready-before "$(attr state)" ready
t_boot=$(now)
if err=$(set_boot_attrs) && err=$(write_attr state boot); then
  pass boot-write
else
  fail boot-write "$err" "state '$(attr state)'"
fi
if took=$(wait_state online "$timeout"); then
  diag "online ${took} s after the boot write"
  diag "$(awk -v a="$t_boot" -v b="$(now)" 'BEGIN { printf "boot_to_online_s=%.2f (from echo boot to state online)", b - a }')"
  pass state-online
elif [ "${VPHI_SCIF_STRICT:-0}" = 1 ]; then
  fail state-online "$took" "shutdown_status '$(attr shutdown_status)'" "$(dmesg | tail -30)"
else
  diag "$took"
  diag "$(dmesg | tail -10)"
  skip state-online "card SCIF node not online"
fi

# scif_dev_show(): both nodes, node 1 Running; scif_peer_register_device() added scif_peer-dev1.
d=/sys/kernel/debug/scif/scif_dev
if grep -q 'Total Nodes 2' $d 2>/dev/null && grep -q '^1[[:space:]]*Running' $d; then pass node-1-running; else fail node-1-running "$(cat $d 2>&1)"; fi
if [ -e /sys/bus/scif_peer_bus/devices/scif_peer-dev1 ]; then pass scif-peer-dev1; else fail scif-peer-dev1 "$(ls /sys/bus/scif_peer_bus/devices 2>&1)"; fi

finish
