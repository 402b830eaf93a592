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
plan 3

expect ready-before "$(attr state)" ready
if err=$(set_boot_attrs) && err=$(write_attr state boot); then
  pass boot-write
else
  fail boot-write "$err" "state '$(attr state)'"
fi
if took=$(wait_state online "$timeout"); then
  diag "online ${took} s after the boot write"
  pass state-online
elif [ "${VPHI_SCIF_STRICT:-0}" = 1 ]; then
  fail state-online "$took" "shutdown_status '$(attr shutdown_status)'" "$(dmesg | tail -30)"
else
  diag "$took"
  diag "$(dmesg | tail -10)"
  skip state-online "card SCIF node not online"
fi

finish
