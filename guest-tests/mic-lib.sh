# Shared helpers of the MIC guest tests (guest-tests/mic-*.sh), sourced by
# each of them; the initramfs holds it at /opt/vphi/lib/mic-lib.sh.
# POSIX sh (busybox ash). Each test prints its own KTAP document: a plan,
# then one result per check, diagnostics ("# ...") before the result they
# explain; it exits 1 if any check failed, else 0 (not the count: init.sh
# reads exit status 4 as SKIP).

MIC=/sys/class/mic/mic0
MIC_DBG=/sys/kernel/debug/mic_host/mic0
DMA_DBG=/sys/kernel/debug/mic_x100_dma
# The host sleeps 1 s after RGCR and polls SPAD2 up to 45 times, 1 s apart
# (cosm_hw_reset, MIC_RESET_TO): 50 s is past the point where it gives up.
MIC_STATE_TIMEOUT=${VPHI_MIC_STATE_TIMEOUT:-50}

ktap_n=0
ktap_failed=0

plan() {
  echo "KTAP version 1"
  echo "1..$1"
}

diag() {
  while IFS= read -r line; do echo "# $line"; done <<EOF
$*
EOF
}

pass() {
  ktap_n=$((ktap_n + 1))
  echo "ok $ktap_n - $1"
}

# fail NAME WHY...
fail() {
  name=$1
  shift
  for why in "$@"; do [ -n "$why" ] && diag "$why"; done
  ktap_n=$((ktap_n + 1))
  ktap_failed=$((ktap_failed + 1))
  echo "not ok $ktap_n - $name"
}

# skip NAME WHY
skip() {
  ktap_n=$((ktap_n + 1))
  echo "ok $ktap_n - $1 # SKIP $2"
}

# expect NAME GOT WANT: pass when equal.
expect() {
  if [ "$2" = "$3" ]; then pass "$1"; else fail "$1" "got '$2', expected '$3'"; fi
}

finish() {
  if [ "$ktap_failed" -gt 0 ]; then
    echo "# $ktap_failed of $ktap_n checks failed"
    exit 1
  fi
  exit 0
}

attr() {
  cat "$MIC/$1" 2>&1
}

# write_attr NAME VALUE: echo VALUE > NAME; prints the error, returns non-zero on failure.
write_attr() {
  ( echo "$2" >"$MIC/$1" ) 2>&1
}

now() {
  cut -d' ' -f1 /proc/uptime
}

# wait_state WANT [SECS]: poll the state attribute every 0.1 s until it
# reads WANT; prints the seconds it took (or the last state seen).
wait_state() {
  want=$1
  secs=${2:-$MIC_STATE_TIMEOUT}
  t0=$(now)
  deadline=$(awk -v t="$t0" -v s="$secs" 'BEGIN { print t + s }')
  while :; do
    s=$(attr state)
    t=$(now)
    if [ "$s" = "$want" ]; then
      awk -v a="$t0" -v b="$t" 'BEGIN { printf "%.1f\n", b - a }'
      return 0
    fi
    if awk -v t="$t" -v d="$deadline" 'BEGIN { exit !(t >= d) }'; then
      echo "still '$s' after ${secs} s"
      return 1
    fi
    sleep 0.1
  done
}

# klog_count REGEX: kernel log lines (since the test started: init.sh
# clears the log after each test) matching REGEX.
klog_count() {
  dmesg | grep -c -E "$1"
}

klog_grep() {
  dmesg | grep -E "$1"
}

# Kernel messages whose presence means a driver step failed: channel set-up
# and drain, DMA device and IRQ set-up (drivers/dma/mic_x100_dma.c,
# drivers/misc/mic/host/mic_intr.c), the firmware download
# (host/mic_x100.c), cosm_start() (cosm/cosm_main.c).
MIC_ERRORS='error setting up mic dma chan|TO chan|Error enqueueing|Error at mic_dma_dev_reg|No MSIx vectors|Error mapping index|request_firmware failed|incorrect bootaddr|mic_x100_load_firmware [0-9]+ rc|cosm_start failed|MIC state not READY|bootmode not set|DMA channels # 0'

# set_boot_attrs: what mpssd/micctrl would write before `boot`.
MIC_FIRMWARE=mic/uos.img
MIC_RAMDISK=mic/mic0.image
MIC_CMDLINE=vphi.card=mic0
set_boot_attrs() {
  write_attr bootmode linux && write_attr firmware "$MIC_FIRMWARE" && write_attr ramdisk "$MIC_RAMDISK" && write_attr cmdline "$MIC_CMDLINE"
}

# mxar N: MXAR[N] (hex, as msi_irq_info prints it), from the register
# read the driver does for debugfs (mic_x100_read_msi_to_src_map).
mxar() {
  sed -n "s/.*MXAR\[$1\]: \([0-9A-Fa-f]*\).*/\1/p" "$MIC_DBG/msi_irq_info"
}

post_code() {
  cat "$MIC_DBG/post_code" 2>&1
}

# dma_reg_file: the one mic_dma_reg of the host DMA device (mbus-devN).
dma_reg_file() {
  ls "$DMA_DBG"/*/mic_dma_reg 2>/dev/null
}

# check_smpt_identity NAME: debugfs smpt shows the 32 identity entries of
# mic_smpt_init() (entry i = i << 34) and entry 0 in use (the device page).
check_smpt_identity() {
  check=$1 # set -- below replaces $1
  smpt=$(grep '^ *|' "$MIC_DBG/smpt")
  bad=""
  n=0
  ref0=""
  while IFS='|' read -r _ idx rest; do
    set -- $rest
    i=$((idx + 0))
    want=$(printf '0x%x' $((i << 34)))
    [ "$1" = "$want" ] || bad="$bad entry $i: $1 != $want;"
    [ "$i" = 0 ] && ref0=$2
    n=$((n + 1))
  done <<END
$smpt
END
  [ "$n" = 32 ] || bad="$bad $n entries, expected 32"
  if [ -z "$bad" ] && [ "${ref0:-0}" -gt 0 ]; then pass "$check"; else fail "$check" "$bad" "entry 0 ref count '${ref0}'" "$smpt"; fi
}
