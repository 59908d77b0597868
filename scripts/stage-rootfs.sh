#!/usr/bin/env bash
# Assemble the image's root filesystem from the release binaries in BIN_DIR
# and runtime files taken from Debian packages (downloaded and unpacked, not
# copied from this machine's /): the shared libraries the binaries link, as
# ldd resolves them; the Mozilla CA bundle as update-ca-certificates would
# build it, where OpenSSL looks by default; passwd/group with the non-root
# user. scripts/build-image.sh and the Dockerfile both use it, so both images
# hold the same files. Every file is owned by root and dated SOURCE_DATE_EPOCH.
#
#   scripts/stage-rootfs.sh BIN_DIR ROOTFS
set -euo pipefail
if [[ $# -ne 2 ]]; then
  echo "usage: $0 BIN_DIR ROOTFS" >&2
  exit 2
fi
bin_dir=$1 rootfs=$2
here="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=../image/spec.env
source "$here/image/spec.env"
epoch="${SOURCE_DATE_EPOCH:?set SOURCE_DATE_EPOCH (e.g. the commit time) for reproducible files}"
debs="${SHOPSTREAM_DEB_CACHE:-/var/cache/shopstream/debs}"
mkdir -p "$debs"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

rm -rf "$rootfs"
# /proc and /dev are mount points for the runtime.
mkdir -p "$rootfs/usr/local/bin" "$rootfs/etc/ssl/certs" "$rootfs/usr/lib/ssl" "$rootfs/tmp" "$rootfs/proc" "$rootfs/dev"
binaries=()
for b in $IMAGE_BINARIES; do
  install -m 0755 "$bin_dir/$b" "$rootfs/usr/local/bin/$b"
  binaries+=("$bin_dir/$b")
done

# Each package at the newest version the archive offers (security updates
# included; the same soname ldd resolved here), downloaded once into the cache.
declare -A unpacked=()
unpack() {
  local pkg=$1 version deb
  [[ -n "${unpacked[$pkg]:-}" ]] && return
  version="$(apt-cache policy "$pkg" | awk '/Candidate:/ {print $2}')"
  [[ -n "$version" && "$version" != "(none)" ]] || { echo "stage-rootfs: no $pkg in the package archive" >&2; exit 1; }
  echo "$pkg $version" >> "$work/packages"
  deb="$(ls "$debs/${pkg}_${version//:/%3a}_"*.deb 2>/dev/null | head -1 || true)"
  if [[ -z "$deb" ]]; then
    (cd "$debs" && apt-get download -q -o APT::Sandbox::User=root "$pkg=$version" >/dev/null)
    deb="$(ls "$debs/${pkg}_${version//:/%3a}_"*.deb | head -1)"
  fi
  mkdir -p "$work/pkg/$pkg"
  dpkg-deb -x "$deb" "$work/pkg/$pkg"
  unpacked[$pkg]=1
}

# A file of a package into the rootfs at the same path; a symlink with its target.
take() {
  local pkg=$1 path=$2
  unpack "$pkg"
  local src="$work/pkg/$pkg$path"
  [[ -e "$src" || -L "$src" ]] || { echo "stage-rootfs: $pkg has no $path" >&2; exit 1; }
  mkdir -p "$rootfs$(dirname "$path")"
  cp -a "$src" "$rootfs$path"
  if [[ -L "$src" ]]; then
    local target
    target="$(readlink "$src")"
    [[ "$target" = /* ]] || target="$(dirname "$path")/$target"
    take "$pkg" "$target"
  fi
}

# Shared libraries (and the loader) as ldd resolves them, by owning package.
# Debian 12 links /lib to /usr/lib: dpkg knows the files by their /lib path.
for lib in $(ldd "${binaries[@]}" | awk '/=> \// {print $3} /^\t\/.*ld-linux/ {print $1}' | sort -u); do
  owner=""
  for path in "$lib" "/usr${lib#/usr}" "${lib#/usr}"; do
    owner="$(dpkg -S "$path" 2>/dev/null | head -1 | cut -d: -f1)" || true
    [[ -n "$owner" ]] && break
  done
  [[ -n "$owner" ]] || { echo "stage-rootfs: no package owns $lib" >&2; exit 1; }
  case " $IMAGE_PACKAGES " in
    *" $owner "*) ;;
    *) echo "stage-rootfs: $lib comes from $owner, which image/spec.env does not list" >&2; exit 1 ;;
  esac
  take "$owner" "$path"
done

# The CA bundle, as update-ca-certificates builds it from the Mozilla set,
# where OpenSSL (and so librdkafka) looks without a configured CA file.
unpack ca-certificates
LC_ALL=C find "$work/pkg/ca-certificates/usr/share/ca-certificates/mozilla" -name '*.crt' | LC_ALL=C sort |
  while read -r crt; do cat "$crt"; [[ -z "$(tail -c1 "$crt")" ]] || echo; done \
  > "$rootfs/etc/ssl/certs/ca-certificates.crt"
ln -s /etc/ssl/certs "$rootfs/usr/lib/ssl/certs"
ln -s /etc/ssl/certs/ca-certificates.crt "$rootfs/usr/lib/ssl/cert.pem"

# Licences of what is shipped.
for pkg in $IMAGE_PACKAGES; do
  unpack "$pkg"
  doc="$work/pkg/$pkg/usr/share/doc/$pkg"
  if [[ -L "$doc" ]]; then
    # e.g. libgcc-s1's documentation is gcc-12-base's.
    base="$(basename "$(readlink "$doc")")"
    unpack "$base"
    doc="$work/pkg/$base/usr/share/doc/$base"
  fi
  mkdir -p "$rootfs/usr/share/doc/$pkg"
  cp "$doc/copyright" "$rootfs/usr/share/doc/$pkg/copyright"
done

# What the runtime files came from, for scanners and readers of the image.
mkdir -p "$rootfs/usr/share/doc/shopstream"
sort "$work/packages" > "$rootfs/usr/share/doc/shopstream/debian-packages"

printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%s:%s:nonroot:/home/nonroot:/sbin/nologin\n' \
  "$IMAGE_UID" "$IMAGE_GID" > "$rootfs/etc/passwd"
printf 'root:x:0:\nnonroot:x:%s:\n' "$IMAGE_GID" > "$rootfs/etc/group"
# Names: /etc/hosts before DNS (glibc's default without nsswitch.conf asks
# DNS first). Container runtimes mount their own hosts and resolv.conf over these.
printf 'passwd: files\ngroup: files\nhosts: files dns\n' > "$rootfs/etc/nsswitch.conf"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost\n' > "$rootfs/etc/hosts"
: > "$rootfs/etc/resolv.conf"
chmod 1777 "$rootfs/tmp"

chown -R -h 0:0 "$rootfs"
find "$rootfs" -exec touch -h -d "@$epoch" {} +
