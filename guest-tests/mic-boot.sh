#!/bin/sh
# mic-boot: `echo boot > state` after the attributes mpssd/micctrl set
# (bootmode linux, firmware mic/uos.img, ramdisk mic/mic0.image, a cmdline)
# gets through cosm_start() and _mic_start(): the write succeeds, the state
# is `booting` (or already `online`), mic_request_dma_chans() logged "DMA channels # 4"
# (drivers/misc/mic/host/mic_boot.c), no channel failed mic_dma_check_chan()
# ("error setting up mic dma chan", drivers/dma/mic_x100_dma.c) and no
# firmware step failed. Then the card's SCIF node comes up and its COSM
# client connects to the host (cosm_scif_server()): `online`.
. /opt/vphi/lib/mic-lib.sh

plan 10

expect bootmode-linux "$(write_attr bootmode linux; attr bootmode)" linux
expect firmware-set "$(write_attr firmware "$MIC_FIRMWARE"; attr firmware)" "$MIC_FIRMWARE"
expect ramdisk-set "$(write_attr ramdisk "$MIC_RAMDISK"; attr ramdisk)" "$MIC_RAMDISK"
expect cmdline-set "$(write_attr cmdline "$MIC_CMDLINE"; attr cmdline)" "$MIC_CMDLINE"

if err=$(write_attr state boot); then pass boot-write; else fail boot-write "echo boot > state: $err" "$(dmesg | tail -20)"; fi
# cosm_start() sets BOOTING before the write returns; the card's COSM client may already have made it ONLINE.
s=$(attr state)
if [ "$s" = booting ] || [ "$s" = online ]; then pass state-booting-or-online; else fail state-booting-or-online "state '$s'"; fi

n=$(klog_count 'mic [0-9a-f:.]+: DMA channels # 4$')
if [ "$n" = 1 ]; then pass dma-channels-4; else fail dma-channels-4 "$n lines 'DMA channels # 4' in the kernel log" "$(klog_grep 'DMA channels')"; fi

n=$(klog_count 'error setting up mic dma chan')
if [ "$n" = 0 ]; then pass no-dma-chan-setup-error; else fail no-dma-chan-setup-error "$(klog_grep 'error setting up mic dma chan')"; fi

errs=$(klog_grep "$MIC_ERRORS")
if [ -z "$errs" ]; then pass no-driver-errors; else fail no-driver-errors "$errs"; fi

# The card's SCIF node comes up and its COSM client connects to port 201: cosm_set_online().
if took=$(wait_state online 10) && [ "$(attr shutdown_status)" = nop ]; then
  diag "online ${took} s after the boot write"
  pass state-online
else
  fail state-online "$took" "shutdown_status '$(attr shutdown_status)'" "$(dmesg | tail -20)"
fi

finish
