#!/bin/sh
# mic-boot: `echo boot > state` after the attributes mpssd/micctrl set
# (bootmode linux, firmware mic/uos.img, ramdisk mic/mic0.image, a cmdline)
# gets through cosm_start() and _mic_start(): the write succeeds, the state
# is `booting`, mic_request_dma_chans() logged "DMA channels # 4"
# (drivers/misc/mic/host/mic_boot.c), no channel failed mic_dma_check_chan()
# ("error setting up mic dma chan", drivers/dma/mic_x100_dma.c) and no
# firmware step failed. The card has no SCIF, so the state then stays
# `booting` (nothing in the host times it out).
. /opt/vphi/lib/mic-lib.sh

plan 10

expect bootmode-linux "$(write_attr bootmode linux; attr bootmode)" linux
expect firmware-set "$(write_attr firmware "$MIC_FIRMWARE"; attr firmware)" "$MIC_FIRMWARE"
expect ramdisk-set "$(write_attr ramdisk "$MIC_RAMDISK"; attr ramdisk)" "$MIC_RAMDISK"
expect cmdline-set "$(write_attr cmdline "$MIC_CMDLINE"; attr cmdline)" "$MIC_CMDLINE"

if err=$(write_attr state boot); then pass boot-write; else fail boot-write "echo boot > state: $err" "$(dmesg | tail -20)"; fi
# cosm_start() sets BOOTING before the write returns.
expect state-booting "$(attr state)" booting

n=$(klog_count 'mic [0-9a-f:.]+: DMA channels # 4$')
if [ "$n" = 1 ]; then pass dma-channels-4; else fail dma-channels-4 "$n lines 'DMA channels # 4' in the kernel log" "$(klog_grep 'DMA channels')"; fi

n=$(klog_count 'error setting up mic dma chan')
if [ "$n" = 0 ]; then pass no-dma-chan-setup-error; else fail no-dma-chan-setup-error "$(klog_grep 'error setting up mic dma chan')"; fi

errs=$(klog_grep "$MIC_ERRORS")
if [ -z "$errs" ]; then pass no-driver-errors; else fail no-driver-errors "$errs"; fi

# Still booting a second later, with nothing reported.
sleep 1
s=$(attr state)
st=$(attr shutdown_status)
if [ "$s" = booting ] && [ "$st" = nop ]; then pass still-booting; else fail still-booting "state '$s', shutdown_status '$st'"; fi

finish
