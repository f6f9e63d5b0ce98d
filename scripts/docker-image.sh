#!/usr/bin/env bash
# Builds the `riffle:dev` container image from nothing (no base image is pulled).
#
#   scripts/docker-image.sh
#
# Builds the binary on this machine (RIFFLE_PROFILE=release by default, or debug), then assembles
# a build context in target/docker-context/: the binary with its debug info stripped, exactly the
# shared libraries `ldd` lists for it (the dynamic loader included) under their own paths in
# rootfs/, a minimal /etc (passwd, group, nsswitch.conf) and an empty data/ for /data. The image
# is `FROM scratch` (deploy/Dockerfile). RIFFLE_IMAGE overrides the tag (default riffle:dev).
set -euo pipefail
cd "$(dirname "$0")/.."

profile=${RIFFLE_PROFILE:-release}
image=${RIFFLE_IMAGE:-riffle:dev}
binary=target/$profile/riffle
context=target/docker-context

case "$profile" in
  release) cargo build --locked --release -p riffle-server ;;
  debug) cargo build --locked -p riffle-server ;;
  *) echo "RIFFLE_PROFILE must be release or debug, not '$profile'" >&2; exit 2 ;;
esac

rm -rf "$context"
mkdir -p "$context/rootfs/etc" "$context/data"

# The binary, without debug info (symbols stay, so panics still name functions).
objcopy --strip-debug "$binary" "$context/riffle"
chmod 0755 "$context/riffle"

# Every shared object the binary loads, at the path the loader looks for it. `ldd` prints
# `name => /path (addr)` for libraries, `/path (addr)` for the loader and `linux-vdso.so.1
# (addr)` for the kernel's vDSO (not a file). Symlinks are followed (cp -L): the image holds the
# real files under the names the binary asks for.
libraries=$(ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u)
if ! grep -q 'ld-linux' <<<"$libraries"; then
  echo "ldd did not list a dynamic loader for $binary:" >&2
  ldd "$binary" >&2
  exit 1
fi
if ldd "$binary" | grep -q 'not found'; then
  echo "ldd cannot resolve every library of $binary:" >&2
  ldd "$binary" >&2
  exit 1
fi
for library in $libraries; do
  mkdir -p "$context/rootfs$(dirname "$library")"
  cp -L "$library" "$context/rootfs$library"
done

# The user the node runs as, and name resolution from /etc/hosts then DNS (Docker writes
# /etc/hosts and /etc/resolv.conf into every container; glibc >= 2.34 has files and dns built in).
cat >"$context/rootfs/etc/passwd" <<'EOF'
root:x:0:0:root:/:/sbin/nologin
riffle:x:10001:10001:riffle:/data:/sbin/nologin
EOF
cat >"$context/rootfs/etc/group" <<'EOF'
root:x:0:
riffle:x:10001:
EOF
cat >"$context/rootfs/etc/nsswitch.conf" <<'EOF'
passwd: files
group: files
hosts: files dns
EOF
mkdir -p "$context/rootfs/tmp"
chmod 1777 "$context/rootfs/tmp"

echo "image context $context:"
(cd "$context" && find . -type f -printf '  %p (%s bytes)\n' | sort)

docker build -t "$image" -f deploy/Dockerfile "$context"
docker image ls "$image"
