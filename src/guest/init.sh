#!/bin/sh
# /init of vphi's test initramfs (POSIX sh, run by busybox ash).
#
# Kernel command line:
#   vphi.tests=T1,T2,...  the tests to run, in order; a test is a program
#                         on PATH (guest programs live in /opt/vphi/bin) and
#                         its arguments, so quote when there are spaces:
#                         vphi.tests="vphi-probe spad --bdf 0000:01:00.0,true"
#                         Default: /etc/vphi/tests, one command per line.
#                         No tests at all: an interactive shell.
#   vphi.shell=1          a shell after the tests, before powering off
#   vphi.timeout=SECS     kill a test after SECS seconds
#   vphi.debug=1          set -x
#   vphi.KEY=VALUE        any other: exported as VPHI_KEY=VALUE (upper case,
#                         '.' and '-' become '_'), for the test programs
#                         (VALUE without spaces)
#
# Output: a KTAP document, one subtest per test (the program's own output,
# KTAP or not, indented 4 spaces); kernel messages logged while a test ran
# follow it as "# dmesg: " diagnostics. Exit status 0 is ok, 4 (kselftest's
# KSFT_SKIP) is "# SKIP", anything else is "not ok". Then
#   VPHI-GUEST-DONE rc=<number of failed tests>
# and poweroff -f.

export PATH=/opt/vphi/bin:/bin:/sbin:/usr/bin:/usr/sbin
export HOME=/root
umask 022

/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s 2>/dev/null
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null || echo "vphi-init: warning: cannot mount devtmpfs"
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null || echo "vphi-init: warning: cannot mount debugfs"
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts 2>/dev/null

echo "VPHI-GUEST-START uptime=$(cut -d' ' -f1 /proc/uptime) kernel=$(uname -r)"

tests=""
have_tests=0
shell=0
cmdline=$(cat /proc/cmdline)
case "$cmdline" in
  *'vphi.tests="'*)
    tests=$(echo "$cmdline" | sed -n 's/.*vphi\.tests="\([^"]*\)".*/\1/p')
    have_tests=1
    cmdline=$(echo "$cmdline" | sed 's/vphi\.tests="[^"]*"//') ;;
esac
set -f
for arg in $cmdline; do
  case "$arg" in
    vphi.tests=*) tests=${arg#vphi.tests=}; have_tests=1 ;;
    vphi.shell=*) shell=${arg#vphi.shell=} ;;
    vphi.shell) shell=1 ;;
    vphi.debug=1 | vphi.debug) set -x ;;
    vphi.*=*)
      k=${arg%%=*}; k=${k#vphi.}
      name=VPHI_$(echo "$k" | tr 'abcdefghijklmnopqrstuvwxyz.-' 'ABCDEFGHIJKLMNOPQRSTUVWXYZ__')
      export "$name=${arg#*=}" ;;
    vphi.*)
      name=VPHI_$(echo "${arg#vphi.}" | tr 'abcdefghijklmnopqrstuvwxyz.-' 'ABCDEFGHIJKLMNOPQRSTUVWXYZ__')
      export "$name=1" ;;
  esac
done
set +f

# The tests, one command per line, in /tmp/vphi-tests.
if [ "$have_tests" = 1 ]; then
  echo "$tests" | tr ',' '\n' | grep -v '^ *$' >/tmp/vphi-tests
elif [ -f /etc/vphi/tests ]; then
  grep -v -e '^ *#' -e '^ *$' /etc/vphi/tests >/tmp/vphi-tests
else
  : >/tmp/vphi-tests
fi
n=$(wc -l </tmp/vphi-tests)

interactive() {
  echo "vphi-init: a shell (test programs in /opt/vphi/bin; 'poweroff -f' ends the session)"
  setsid cttyhack sh -l
}

failed=0
if [ "$n" -eq 0 ]; then
  interactive
else
  # Kernel messages go to the ring buffer, not the console, while tests run
  # (only emergencies and alerts still reach it): they would tear KTAP lines.
  dmesg -c >/dev/null
  dmesg -n 2
  echo "KTAP version 1"
  echo "1..$n"
  i=0
  while IFS= read -r cmd; do
    i=$((i + 1))
    set -f
    # shellcheck disable=SC2086
    set -- $cmd
    set +f
    name=$1
    echo "# Subtest: $name"
    {
      if [ -n "$VPHI_TIMEOUT" ]; then
        timeout -s KILL "$VPHI_TIMEOUT" "$@" </dev/null 2>&1
      else
        "$@" </dev/null 2>&1
      fi
      echo "$?" >/tmp/vphi-rc
    } | sed 's/^/    /'
    rc=$(cat /tmp/vphi-rc)
    dmesg -c | sed 's/^/    # dmesg: /'
    desc=$(echo "$cmd" | tr -s ' ')
    if [ "$rc" -eq 0 ]; then
      echo "ok $i $desc"
    elif [ "$rc" -eq 4 ]; then
      echo "ok $i $desc # SKIP"
    else
      case "$rc" in
        127) echo "# $name: command not found" ;;
        137) echo "# $name: killed (timeout?)" ;;
        *) [ "$rc" -gt 128 ] && echo "# $name: killed by signal $((rc - 128))" || echo "# $name: exit status $rc" ;;
      esac
      echo "not ok $i $desc"
      failed=$((failed + 1))
    fi
  done </tmp/vphi-tests
  dmesg -n 7
  [ "$shell" = 1 ] && interactive
fi

[ "$failed" -gt 255 ] && failed=255
echo "VPHI-GUEST-DONE rc=$failed"
sync
poweroff -f
# Only reached if poweroff fails: panic=-1 and -no-reboot end QEMU.
exit "$failed"
