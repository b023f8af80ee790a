#!/usr/bin/env bash
# Installs Ringfort's C ABI: libringfort.so (soname libringfort.so.0) and libringfort.a,
# ringfort.h and ringfort.hpp, and ringfort.pc for pkg-config.
#
#   ffi/install.sh [--prefix DIR] [--profile release|dev] [--from DIR]
#
# --prefix   where to install (default /usr/local): DIR/lib, DIR/include, DIR/lib/pkgconfig
# --profile  the cargo profile to build with (default release)
# --from     install the libraries already built in DIR (libringfort_ffi.{so,a}) instead
#            of building them
#
# Afterwards `cc prog.c $(pkg-config --cflags --libs ringfort)` works when
# DIR/lib/pkgconfig is on PKG_CONFIG_PATH (it is for /usr/local on Debian); run
# `ldconfig` (or set LD_LIBRARY_PATH) if DIR/lib is not on the loader's path.
set -euo pipefail

prefix=/usr/local
profile=release
from=
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix=$2; shift 2 ;;
    --profile) profile=$2; shift 2 ;;
    --from) from=$2; shift 2 ;;
    *) echo "usage: $0 [--prefix DIR] [--profile release|dev] [--from DIR]" >&2; exit 2 ;;
  esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -n 1)
if [ -z "$from" ]; then
  (cd "$root" && cargo build --profile "$profile" -p ringfort-ffi --lib)
  target=${CARGO_TARGET_DIR:-$root/target}
  case "$profile" in
    dev) from=$target/debug ;;
    *) from=$target/$profile ;;
  esac
fi
for f in libringfort_ffi.so libringfort_ffi.a; do
  [ -f "$from/$f" ] || { echo "$0: $from/$f is missing" >&2; exit 1; }
done

install -d "$prefix/lib/pkgconfig" "$prefix/include"
install -m 755 "$from/libringfort_ffi.so" "$prefix/lib/libringfort.so.$version"
ln -sf "libringfort.so.$version" "$prefix/lib/libringfort.so.0"
ln -sf libringfort.so.0 "$prefix/lib/libringfort.so"
install -m 644 "$from/libringfort_ffi.a" "$prefix/lib/libringfort.a"
install -m 644 "$root/ffi/include/ringfort.h" "$root/ffi/include/ringfort.hpp" "$prefix/include/"
sed -e "s|@PREFIX@|$prefix|g" -e "s|@VERSION@|$version|g" "$root/ffi/ringfort.pc.in" \
  > "$prefix/lib/pkgconfig/ringfort.pc"
echo "installed ringfort $version into $prefix"
