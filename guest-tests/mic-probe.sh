#!/bin/sh
# mic-probe: what mic_probe() and the mic_cosm probe leave behind, before
# anything is booted: /sys/class/mic/mic0 (state ready, family x100,
# stepping C0 from PCI revision 0x20), the driver's debugfs views (post code
# of a bootstrap waiting for a download, the identity SMPT, MSI-X with 9
# vectors and no source routed yet) and no DMA device yet (mic_x100_dma's
# mbus device is registered only by _mic_start).
. /opt/vphi/lib/mic-lib.sh

plan 11

if [ -d "$MIC" ]; then pass sysfs-mic0; else fail sysfs-mic0 "$(ls /sys/class/mic 2>&1)"; fi
n=$(ls /sys/class/mic 2>/dev/null | wc -l)
expect one-card "$n" 1
expect state-ready "$(attr state)" ready
expect family-x100 "$(attr family)" x100
expect stepping-C0 "$(attr stepping)" C0
expect shutdown-status-nop "$(attr shutdown_status)" nop

missing=""
for f in smpt post_code msi_irq_info; do [ -r "$MIC_DBG/$f" ] || missing="$missing $f"; done
if [ -z "$missing" ]; then pass debugfs-files; else fail debugfs-files "missing in $MIC_DBG:$missing"; fi

# "FF": the emulated bootstrap is ready for a download.
expect post-code-ready "$(post_code)" FF

# mic_smpt_init(): entry i maps host DMA address i << 34; entry 0 holds the device page.
check_smpt_identity smpt-identity

# MSI-X: mic_setup_msix() enables exactly MIC_MIN_MSIX = 9 vectors; nothing is requested at probe.
nvec=$(grep -c 'MXAR\[' "$MIC_DBG/msi_irq_info")
set0=$(grep 'MXAR\[' "$MIC_DBG/msi_irq_info" | grep -v 'MXAR\[[0-9]*\]: 00000000')
if [ "$nvec" = 9 ] && [ -z "$set0" ]; then pass msix-9-vectors-unrouted; else fail msix-9-vectors-unrouted "$nvec vectors; routed: $set0" "$(grep MXAR "$MIC_DBG/msi_irq_info")"; fi

if [ -z "$(dma_reg_file)" ]; then pass no-dma-device-yet; else fail no-dma-device-yet "$(dma_reg_file)"; fi

finish
