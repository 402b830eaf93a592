#!/bin/sh
# mic-debugfs: after `boot`, the driver's own debugfs views show what it
# programmed into the card:
#   mic_host/mic0/post_code      "OS" (the emulated card OS runs)
#   mic_host/mic0/smpt           32 identity entries, entry 0 in use
#   mic_host/mic0/msi_irq_info   MXAR[0..3] read back 0x100 << n: DMA
#                                sources 8..11 on vectors 0..3; MXAR[4] one
#                                SCIF doorbell source (0..3) on vector 4
#   mic_x100_dma/mbus-devN/mic_dma_reg  DCR with the enable bits of
#                                channels 0-3, DRAR_HI 0x041FFFC0 (system
#                                memory, 0x1FFFC descriptors; SMPT entry and
#                                address bits 33:32 aside), a ring address,
#                                DCHERR 0, DCAR unmasked, each channel idle.
. /opt/vphi/lib/mic-lib.sh

plan 10

expect online "$(attr state)" online
expect post-code-os "$(post_code)" OS

check_smpt_identity smpt-entries

bad=""
for ch in 0 1 2 3; do
  got=$(mxar "$ch")
  want=$(printf '%08X' $((0x100 << ch)))
  [ "$got" = "$want" ] || bad="$bad MXAR[$ch] = $got, expected $want;"
done
if [ -z "$bad" ]; then pass mxar-dma-vectors-0-3; else fail mxar-dma-vectors-0-3 "$bad" "$(grep MXAR "$MIC_DBG/msi_irq_info")"; fi

got=$(mxar 4)
case "$got" in
  00000001 | 00000002 | 00000004 | 00000008) pass mxar-scif-doorbell-vector-4 ;;
  *) fail mxar-scif-doorbell-vector-4 "MXAR[4] = '$got', expected one doorbell source (bit 0..3)" ;;
esac

f=$(dma_reg_file)
if [ -n "$f" ] && [ "$(echo "$f" | wc -l)" = 1 ]; then
  diag "$(cat "$f")"
  pass dma-reg-file
else
  fail dma-reg-file "mic_dma_reg files: '$f'" "$(ls -R "$DMA_DBG" 2>&1)"
fi
regs=$(cat "$f" 2>/dev/null)

dcr=$(echo "$regs" | sed -n 's/^SBOX_DCR: *//p')
if [ -n "$dcr" ] && [ $((dcr & 0xaa)) = $((0xaa)) ]; then pass dcr-channels-0-3-enabled; else fail dcr-channels-0-3-enabled "SBOX_DCR '$dcr': enable bits (0xaa) of channels 0-3 not all set"; fi

# Channel lines: "N         | DCAR DTPR DHPR DRAR_HI DRAR_LO DCHERR DCHERRMSK DSTAT"
rows=$(echo "$regs" | grep -E '^[0-3] +\|')
drar=""; err=""; idle=""; nrows=0
while IFS='|' read -r ch rest; do
  set -- $rest
  ch=$((ch + 0)); dcar=$1; dtpr=$2; dhpr=$3; hi=$4; lo=$5; dcherr=$6; msk=$7; dstat=$8
  nrows=$((nrows + 1))
  # bits 25:21 SMPT entry and 1:0 address bits 33:32 vary with where the ring landed.
  [ "$(printf '0x%08x' $((hi & ~0x03e00003)))" = 0x041fffc0 ] && [ $((lo)) != 0 ] && [ $((lo & 63)) = 0 ] || drar="$drar ch$ch DRAR_HI $hi DRAR_LO $lo;"
  [ $((dcherr)) = 0 ] && [ $((msk)) = 0 ] && [ $((dcar & 0x02000000)) = 0 ] || err="$err ch$ch DCAR $dcar DCHERR $dcherr DCHERRMSK $msk;"
  [ $((dstat & 0x20000000)) = 0 ] && [ $((dstat & 0x1ffff)) = $((dtpr)) ] && [ $((dtpr)) = $((dhpr)) ] || idle="$idle ch$ch DTPR $dtpr DHPR $dhpr DSTAT $dstat;"
done <<END
$rows
END
[ "$nrows" = 4 ] || drar="$drar $nrows channel rows, expected 4"
if [ -z "$drar" ]; then pass drar-ring-in-system-memory; else fail drar-ring-in-system-memory "$drar"; fi
if [ -z "$err" ] && [ "$nrows" = 4 ]; then pass dcherr-0-unmasked; else fail dcherr-0-unmasked "$err"; fi
if [ -z "$idle" ] && [ "$nrows" = 4 ]; then pass channels-idle; else fail channels-idle "$idle"; fi

finish
