# Shared helpers for vphi's set-up scripts. Source it; do not run it.
# Every step is cached under $VPHI_CACHE and keyed by a stamp that names its
# inputs, so running set-up again is a no-op (idempotent) and cheap.

VPHI_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VPHI_CACHE="${VPHI_CACHE:-$VPHI_ROOT/.cache}"
STAMPS="$VPHI_CACHE/stamps"
mkdir -p "$STAMPS"

# Versions we pin. Changing one re-runs only the steps that use it.
QEMU_SUITE="trixie-backports"        # QEMU >= 10.1 with vfio-user-pci
QEMU_SRC_SUITE="trixie"              # the qemu source package carrying subprojects/libvfio-user
DEBIAN_MIRROR="http://deb.debian.org/debian"

QUIET_IF_DONE=0
VPHI_TAG="${VPHI_TAG:-vphi setup}"
_step_name=""
_step_start=0

if [ -t 2 ]; then B=$'\033[1m'; R=$'\033[31m'; N=$'\033[0m'; else B=""; R=""; N=""; fi

step() { # step NAME: announce a step
  _step_name="$1"
  _step_start=$(date +%s%N)
  printf '%s[%s]%s %s ...\n' "$B" "$VPHI_TAG" "$N" "$_step_name" >&2
}

step_done() {
  local ms=$(( ($(date +%s%N) - _step_start) / 1000000 ))
  printf '%s[%s]%s %s: done (%d.%03d s)\n' "$B" "$VPHI_TAG" "$N" "$_step_name" $((ms / 1000)) $((ms % 1000)) >&2
}

skip() { # skip NAME: a cached step
  [ "$QUIET_IF_DONE" = 1 ] || printf '[%s] %s: cached\n' "$VPHI_TAG" "$1" >&2
}

die() { # die MESSAGE: one clear line naming the step, then exit
  printf '%s[%s] FAILED at step "%s": %s%s\n' "$R" "$VPHI_TAG" "${_step_name:-$VPHI_TAG}" "$*" "$N" >&2
  exit 1
}

# run LOG CMD...: run quietly into a log; on failure show the tail and die.
run() {
  local log="$1"; shift
  if ! "$@" >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    die "command failed: $* (full log: $log)"
  fi
}

stamp_ok() { [ -f "$STAMPS/$1" ]; }
stamp_set() { touch "$STAMPS/$1"; }

# A private apt: its own sources list, lists, cache and an empty dpkg
# status. The host's apt sources, dpkg database and libc stay untouched.
PAPT="$VPHI_CACHE/apt"
papt_config() {
  mkdir -p "$PAPT"/{etc/sources.list.d,etc/preferences.d,lists/partial,archives/partial,state}
  : >"$PAPT/state/status.tmp"
  [ -f "$PAPT/state/status" ] || mv "$PAPT/state/status.tmp" "$PAPT/state/status"
  rm -f "$PAPT/state/status.tmp"
  local key=/usr/share/keyrings/debian-archive-keyring.gpg
  cat >"$PAPT/etc/sources.list" <<EOF
deb [signed-by=$key] $DEBIAN_MIRROR trixie main
deb [signed-by=$key] $DEBIAN_MIRROR trixie-backports main
deb-src [signed-by=$key] $DEBIAN_MIRROR trixie main
EOF
  cat >"$PAPT/apt.conf" <<EOF
Dir::Etc::SourceList "$PAPT/etc/sources.list";
Dir::Etc::SourceParts "$PAPT/etc/sources.list.d";
Dir::Etc::Preferences "$PAPT/etc/preferences";
Dir::Etc::PreferencesParts "$PAPT/etc/preferences.d";
Dir::State "$PAPT/state";
Dir::State::Lists "$PAPT/lists";
Dir::State::status "$PAPT/state/status";
Dir::Cache "$PAPT";
Dir::Cache::archives "$PAPT/archives";
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
APT::Architecture "amd64";
APT::Architectures { "amd64"; };
APT::Install-Recommends "false";
APT::Sandbox::User "root";
Debug::NoLocking "true";
EOF
}
papt() { APT_CONFIG="$PAPT/apt.conf" "$@"; }

# hash_files FILE...: a short content hash of the files that exist (for stamps).
hash_files() {
  local f
  for f in "$@"; do if [ -f "$f" ]; then cat "$f"; fi; done | sha256sum | cut -c1-16
}
