#!/usr/bin/env bash
# npm run fuzz: the protocol fuzzer (src/binding/fuzz.test.ts) and the
# in-process BAR4/DMA fuzzer (device/x100/bar4-fuzz.test.ts), longer, with
# the server's native code under ASan and UBSan. Not part of CI.
#
#   scripts/fuzz.sh                     VPHI_FUZZ_ITERS=30000 (the tests' default is 1000)
#   VPHI_FUZZ_ITERS=N VPHI_FUZZ_SEED=S scripts/fuzz.sh
#
# The sanitized builds go to .cache/fuzz/ (native/build is left alone):
#   lvu/     libvfio-user from set-up's source, -Db_sanitize=address,undefined
#   native/  a copy of native/ built by node-gyp with -fsanitize=address,undefined
# Only the server process gets LD_PRELOAD=libasan.so (node itself is not
# built with ASan, so the runtime must come first). Exit status 1 on a
# failed test or any sanitizer report.
set -euo pipefail
VPHI_TAG="vphi fuzz"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bash "$VPHI_ROOT/scripts/setup" --quiet-if-done

FUZZ="$VPHI_CACHE/fuzz"
LOGS="$VPHI_CACHE/logs"
mkdir -p "$FUZZ" "$LOGS"
SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"

# ------------------------------------------------------ libvfio-user, sanitized
LVU_SRC="$VPHI_CACHE/lvu/src"
LVU_PREFIX="$FUZZ/lvu/prefix"
lvu_h=$(hash_files "$LVU_SRC/lib"/*.c "$LVU_SRC/meson.build" | cut -c1-16)
if ! stamp_ok "fuzz-lvu-$lvu_h" || [ ! -f "$LVU_PREFIX/lib/libvfio-user.so" ]; then
  step "libvfio-user with ASan/UBSan (.cache/fuzz/lvu)"
  rm -rf "$FUZZ/lvu"
  run "$LOGS/fuzz-lvu-meson.log" meson setup "$FUZZ/lvu/build" "$LVU_SRC" --prefix="$LVU_PREFIX" --libdir=lib \
    --buildtype=debugoptimized -Ddebug-logs=disabled -Db_sanitize=address,undefined -Db_lundef=false
  run "$LOGS/fuzz-lvu-ninja.log" ninja -C "$FUZZ/lvu/build" install
  rm -f "$STAMPS"/fuzz-lvu-*
  stamp_set "fuzz-lvu-$lvu_h"
  step_done
fi

# ------------------------------------------------------------ addon, sanitized
ADDON="$FUZZ/native/build/Release/vphi_native.node"
addon_h=$( { echo "$SAN $lvu_h"; hash_files "$VPHI_ROOT"/native/*.cc "$VPHI_ROOT"/native/*.h "$VPHI_ROOT"/native/binding.gyp; } | sha256sum | cut -c1-16)
if ! stamp_ok "fuzz-addon-$addon_h" || [ ! -f "$ADDON" ]; then
  step "addon with ASan/UBSan (.cache/fuzz/native)"
  rm -rf "$FUZZ/native"; mkdir -p "$FUZZ/native"
  cp "$VPHI_ROOT"/native/*.cc "$VPHI_ROOT"/native/*.h "$VPHI_ROOT"/native/binding.gyp "$FUZZ/native/"
  gyp="$VPHI_ROOT/node_modules/node-gyp/bin/node-gyp.js"
  (cd "$FUZZ/native" && VPHI_LVU_PREFIX="$LVU_PREFIX" CFLAGS="$SAN -g" CXXFLAGS="$SAN -g" LDFLAGS="$SAN" \
    run "$LOGS/fuzz-addon.log" node "$gyp" rebuild --nodedir=/usr)
  rm -f "$STAMPS"/fuzz-addon-*
  stamp_set "fuzz-addon-$addon_h"
  step_done
fi

# ---------------------------------------------------------------------- run
ASAN_LIB=$(gcc -print-file-name=libasan.so)
[ -f "$ASAN_LIB" ] || die "no libasan.so ($ASAN_LIB): install gcc's libasan"
OUT="$LOGS/fuzz-run.log"
step "fuzz (VPHI_FUZZ_ITERS=${VPHI_FUZZ_ITERS:-30000}${VPHI_FUZZ_SEED:+, VPHI_FUZZ_SEED=$VPHI_FUZZ_SEED}; log $OUT)"
set +e
(cd "$VPHI_ROOT" && \
  VPHI_FUZZ_ITERS="${VPHI_FUZZ_ITERS:-30000}" \
  VPHI_FUZZ_ADDON_PATH="$ADDON" \
  VPHI_FUZZ_ASAN_PRELOAD="$ASAN_LIB" \
  ASAN_OPTIONS="detect_leaks=0:alloc_dealloc_mismatch=0:detect_odr_violation=0:halt_on_error=1:print_summary=1" \
  UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
  npx vitest run src/binding/fuzz.test.ts device/x100/bar4-fuzz.test.ts 2>&1 | tee "$OUT")
rc=${PIPESTATUS[0]}
set -e
findings=$(grep -cE '==[0-9]+==ERROR: [A-Za-z]+Sanitizer|runtime error:' "$OUT" || true)
if [ "$findings" != 0 ]; then
  echo "[vphi fuzz] $findings sanitizer finding(s):" >&2
  grep -E -A12 '==[0-9]+==ERROR: [A-Za-z]+Sanitizer|runtime error:' "$OUT" | head -80 >&2
  exit 1
fi
[ "$rc" = 0 ] || die "the fuzz tests failed (exit $rc); see $OUT"
step_done
echo "[vphi fuzz] no sanitizer findings" >&2
