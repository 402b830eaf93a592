#!/bin/sh
# mic-cycle [N] [--rma]: N times (default 10) `boot` then `reset`, as mpssd
# does for a card that is restarted. Each boot must reach `online` with a new
# "DMA channels # 4" and no channel set-up error; each reset must come back
# to `ready` within the host's own limit with no drain timeout ("TO chan").
# With --rma, each online card also passes a short SCIF RMA check against
# its agent (vphi-scif-rma aligned card-writeto soak, 1 MiB of soak; card
# needs SCIF strict, so a node that is not online fails). One result per
# boot, RMA check and reset, then the log totals.
. /opt/vphi/lib/mic-lib.sh

cycles=10
rma=0
for a in "$@"; do
  case "$a" in
    --rma) rma=1 ;;
    *) cycles=$a ;;
  esac
done
plan $(((2 + rma) * cycles + 3))

expect ready-before "$(attr state)" ready
set_boot_attrs >/dev/null || true

i=1
while [ "$i" -le "$cycles" ]; do
  before=$(klog_count 'DMA channels # 4$')
  if err=$(write_attr state boot); then
    wait_state online 10 >/dev/null
    s=$(attr state)
    after=$(klog_count 'DMA channels # 4$')
    bad=$(klog_grep 'error setting up mic dma chan')
    if [ "$s" = online ] && [ "$after" = $((before + 1)) ] && [ -z "$bad" ]; then
      pass "boot-$i"
    else
      fail "boot-$i" "state '$s', 'DMA channels # 4' lines $before -> $after" "$bad"
    fi
  else
    fail "boot-$i" "echo boot > state: $err" "$(dmesg | tail -20)"
  fi
  if [ "$rma" = 1 ]; then
    # A fresh seed each cycle; the output only when it failed.
    if out=$(vphi-scif-rma aligned card-writeto soak --node 1 --scif-strict --seed "$i" --soak-bytes 1048576 --soak-max 262144 2>&1); then
      pass "rma-$i"
    else
      fail "rma-$i" "$(echo "$out" | grep -v '^ *ok ' | tail -20)"
    fi
  fi
  to_before=$(klog_count 'TO chan')
  if err=$(write_attr state reset); then
    if took=$(wait_state ready); then
      to_after=$(klog_count 'TO chan')
      if [ "$to_after" = "$to_before" ]; then
        diag "ready ${took} s after the reset write"
        pass "reset-$i"
      else
        fail "reset-$i" "$(klog_grep 'TO chan')"
      fi
    else
      fail "reset-$i" "$took" "$(dmesg | tail -20)"
    fi
  else
    fail "reset-$i" "echo reset > state: $err (state '$(attr state)')"
  fi
  i=$((i + 1))
done

n=$(klog_count 'mic [0-9a-f:.]+: DMA channels # 4$')
if [ "$n" = "$cycles" ]; then pass dma-channels-4-every-boot; else fail dma-channels-4-every-boot "$n of $cycles boots logged 'DMA channels # 4'" "$(klog_grep 'DMA channels')"; fi
errs=$(klog_grep "$MIC_ERRORS")
if [ -z "$errs" ]; then pass no-driver-errors; else fail no-driver-errors "$errs"; fi

finish
