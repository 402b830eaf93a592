#!/bin/sh
# mic-intx: with MSI and MSI-X unavailable (the guest booted with
# pci=nomsi), mic_setup_interrupts() falls back to INTx: pci_intx() and one
# shared "mic-intx" handler (mic_setup_intx, drivers/misc/mic/host/mic_intr.c).
# Checks: the card still probed, its interrupt is the INTx line, and no
# MSI-X vector was allocated.
. /opt/vphi/lib/mic-lib.sh

plan 3

expect state-ready "$(attr state)" ready
line=$(grep 'mic-intx' /proc/interrupts)
if [ -n "$line" ]; then diag "$line"; pass intx-handler; else fail intx-handler "$(grep -i mic /proc/interrupts)"; fi
msix=$(grep -i 'mic.*msi' /proc/interrupts)
if [ -z "$msix" ]; then pass no-msi-vectors; else fail no-msi-vectors "$msix"; fi

finish
