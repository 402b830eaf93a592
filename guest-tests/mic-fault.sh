#!/bin/sh
# mic-fault KIND: inject one fault into the card from inside the guest and
# check what the real host drivers make of it, then that the card serves on.
# A line "vphi-ctl: fault SPEC" on the console asks the harness
# (guest-tests/fault.test.ts) to arm SPEC on the card, as `vphi ctl fault`
# does; {h2c_db} and {c2h_vector} in SPEC are the card's SCIF doorbell and
# the vector of the host's SCIF doorbell interrupt. The card must be online.
#
#   drop-doorbell  the card's SCIF doorbell rings once for nothing: an echo
#                  connect waits in the ring until the next host message
#                  (a second connect) rings it; both complete
#   drop-irq       one MSI-X message of the host's SCIF interrupt is lost:
#                  the card's grant waits until the next interrupt; both complete
#   dma-slow       the host DMA channels at 2 MB/s: RMA copies still pass,
#                  slowly; lifted again with mbps=0
#   dma-error      every host DMA channel fails its next descriptor (DCHERR
#                  SRC_ADDR): mic_x100_dma never reads DCHERR, so SCIF's SYNC
#                  copy fails with EIO after dma_sync_wait's 5 s; the channel
#                  stays stopped (fences time out) until a card reset, after
#                  which RMA passes again
#   card-crash     the card OS stops: after the host's 40 s COSM watchdog the
#                  state is shutting_down with shutdown_status crashed and the
#                  post code CR; reset and boot bring it back online, echo works
. /opt/vphi/lib/mic-lib.sh

CTL_WAIT=${VPHI_CTL_WAIT:-2}

# ctl SPEC: ask the harness to arm SPEC, give it time to see the line. It goes
# straight to the console: init.sh's indenting sed holds each line back until
# the next one comes.
ctl() {
  echo "vphi-ctl: fault $1" >/dev/console
  sleep "$CTL_WAIT"
}

# echo_ok NAME [ARGS]: one echo round through the card's echo service.
echo_ok() {
  name=$1
  shift
  if out=$(vphi-scif echo --node 1 --rounds 2 "$@" 2>&1); then pass "$name"; else fail "$name" "$out"; fi
}

# two_echoes NAME: an echo in the background, then a second one whose traffic
# rings what the first is waiting for; both must pass.
two_echoes() {
  name=$1
  vphi-scif echo --node 1 --rounds 2 >/tmp/echo1.out 2>&1 &
  first=$!
  sleep 3
  if out=$(vphi-scif echo --node 1 --rounds 2 2>&1); then pass "$name-second"; else fail "$name-second" "$out"; fi
  if wait "$first"; then pass "$name-first"; else fail "$name-first" "$(cat /tmp/echo1.out)" "$(dmesg | tail -10)"; fi
}

# reset_and_boot NAME RESET_SECS: reset, wait ready, boot, wait online.
reset_and_boot() {
  name=$1
  if err=$(write_attr state reset); then pass "$name-reset"; else fail "$name-reset" "echo reset > state: $err"; fi
  if took=$(wait_state ready "$2"); then
    diag "ready ${took} s after the reset write"
    pass "$name-ready"
  else
    fail "$name-ready" "$took" "$(dmesg | tail -20)"
  fi
  if err=$(set_boot_attrs) && err=$(write_attr state boot) && took=$(wait_state online 60); then
    diag "online ${took} s after the boot write"
    pass "$name-online"
  else
    fail "$name-online" "$err" "$took" "$(dmesg | tail -20)"
  fi
}

case "$1" in
drop-doorbell)
  plan 3
  expect online-before "$(attr state)" online
  ctl 'drop-doorbell:db={h2c_db},count=1'
  two_echoes echo
  ;;
drop-irq)
  plan 3
  expect online-before "$(attr state)" online
  ctl 'drop-irq:vector={c2h_vector},count=1'
  two_echoes echo
  ;;
dma-slow)
  plan 4
  expect online-before "$(attr state)" online
  for ch in 0 1 2 3; do ctl "dma-slow:chan=$ch,mbps=2"; done
  if out=$(vphi-scif-rma aligned --node 1 2>&1); then pass rma-slow; else fail rma-slow "$out" "$(dmesg | tail -10)"; fi
  for ch in 0 1 2 3; do ctl "dma-slow:chan=$ch,mbps=0"; done
  if out=$(vphi-scif-rma aligned --node 1 2>&1); then pass rma-lifted; else fail rma-lifted "$out"; fi
  errs=$(klog_grep "$MIC_ERRORS|scif_sync_dma|scif_async_dma")
  if [ -z "$errs" ]; then pass no-driver-errors; else fail no-driver-errors "$errs"; fi
  ;;
dma-error)
  plan 8
  expect online-before "$(attr state)" online
  for ch in 0 1 2 3; do ctl "dma-error:chan=$ch,bit=src"; done
  # The SYNC copy fails with EIO after dma_sync_wait's 5 s (scif_sync_dma); the fence
  # waits that follow time out after 30 s each, so the run is cut short here.
  out=$(timeout 40 vphi-scif-rma aligned --node 1 2>&1)
  rc=$?
  diag "vphi-scif-rma aligned exit $rc (143: cut short)"
  if [ "$rc" != 0 ] && echo "$out" | grep -q 'SCIF_WRITETO: Input/output error'; then
    diag "$(echo "$out" | grep -m 2 'error\|timed out')"
    pass copy-fails
  else
    fail copy-fails "exit $rc" "$out"
  fi
  reported=$(klog_grep 'scif_sync_dma|scif_async_dma|scif_rma_list_dma_copy|dma_sync_wait|TO chan|err -')
  if [ -n "$reported" ]; then diag "$reported"; pass driver-reports; else fail driver-reports "no kernel message" "$(dmesg | tail -20)"; fi
  # The channel stays stopped (nothing in the driver clears DCHERR) until the card is reset.
  reset_and_boot recover 90
  if out=$(vphi-scif-rma aligned --node 1 2>&1); then pass rma-after-reset; else fail rma-after-reset "$out"; fi
  echo_ok echo-after-reset
  ;;
card-crash)
  plan 9
  expect online-before "$(attr state)" online
  ctl 'card-crash'
  # cosm_scif_work(): 40 s without a COSM message → "node alive timeout", crashed.
  if took=$(wait_state shutting_down 70); then
    diag "shutting_down ${took} s after the crash"
    pass host-sees-crash
  else
    fail host-sees-crash "$took" "$(dmesg | tail -20)"
  fi
  expect shutdown-status "$(attr shutdown_status)" crashed
  expect post-code-crash "$(post_code)" CR
  if [ -n "$(klog_grep 'node alive timeout')" ]; then pass node-alive-timeout; else fail node-alive-timeout "$(dmesg | tail -20)"; fi
  # cosm_reset(): scif_disconnect_node() waits 30 s for the dead card's SCIF_EXIT_ACK, then RGCR.
  reset_and_boot recover 120
  echo_ok echo-after-reset
  ;;
*)
  echo "usage: mic-fault drop-doorbell|drop-irq|dma-slow|dma-error|card-crash" >&2
  exit 2
  ;;
esac
finish
