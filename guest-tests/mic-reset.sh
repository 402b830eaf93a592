#!/bin/sh
# mic-reset: `echo reset > state` from `online` runs cosm_stop(): _mic_stop()
# (SCIF unregister, every DMA channel drained with a FENCE status
# descriptor and released, DMA device unregistered) then cosm_hw_reset()
# (SPAD2 <- 0, RGCR, 1 s sleep, poll SPAD2 bit 0). Checks: the state comes
# back to `ready` within the host's own limit, no drain timed out ("TO
# chan": dma_sync_wait() gave up on a status descriptor the card did not
# complete), no other driver error, the bootstrap post code is back, the DMA
# device and its vectors are gone, and a reset from `ready` is refused.
. /opt/vphi/lib/mic-lib.sh

plan 9

expect online-before "$(attr state)" online
if err=$(write_attr state reset); then pass reset-write; else fail reset-write "echo reset > state: $err"; fi
if took=$(wait_state ready); then
  diag "ready ${took} s after the reset write"
  pass state-ready
else
  fail state-ready "$took" "$(dmesg | tail -20)"
fi

n=$(klog_count 'TO chan')
if [ "$n" = 0 ]; then pass no-drain-timeout; else fail no-drain-timeout "$(klog_grep 'TO chan')"; fi
errs=$(klog_grep "$MIC_ERRORS")
if [ -z "$errs" ]; then pass no-driver-errors; else fail no-driver-errors "$errs"; fi

expect shutdown-status-nop "$(attr shutdown_status)" nop
expect post-code-ready "$(post_code)" FF

# mbus_unregister_device() removed the DMA device; its IRQs were freed (MXAR bits cleared).
routed=$(grep 'MXAR\[' "$MIC_DBG/msi_irq_info" | grep -v 'MXAR\[[0-9]*\]: 00000000')
if [ -z "$(dma_reg_file)" ] && [ -z "$routed" ]; then pass dma-device-gone; else fail dma-device-gone "mic_dma_reg: '$(dma_reg_file)'" "still routed: $routed"; fi

# cosm_reset(): READY -> -EINVAL.
if err=$(write_attr state reset); then
  fail reset-from-ready-refused "the write succeeded; state now '$(attr state)'"
  wait_state ready >/dev/null
else
  pass reset-from-ready-refused
fi

finish
