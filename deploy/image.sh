#!/usr/bin/env bash
# Builds the accord container image from a binary on this machine, with no base image
# to pull: stages the binary (stripped), the shared libraries `ldd` says it needs and
# the dynamic loader, a passwd entry for uid 10001 and an empty data folder, then
# runs `docker build` with deploy/Dockerfile on that staging folder.
#
#   deploy/image.sh [BINARY] [TAG]
#
# BINARY: default target/release/accord (build it with `cargo build --release`).
# TAG: default accord:VERSION, where VERSION is what `BINARY --version` prints.
# Prints the image's tag on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."

binary=${1:-target/release/accord}
if [[ ! -x $binary ]]; then
    echo "deploy/image.sh: no binary at $binary (run: cargo build --release)" >&2
    exit 1
fi
version=$("$binary" --version | awk '{print $2}')
tag=${2:-accord:$version}

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/rootfs/usr/local/bin" "$stage/rootfs/etc/accord" "$stage/rootfs/tmp" "$stage/data"
chmod 1777 "$stage/rootfs/tmp"
objcopy --strip-all "$binary" "$stage/rootfs/usr/local/bin/accord"

# Every library the binary loads, at the path the loader looks for it, and the
# loader itself (the interpreter named in the binary).
ldd "$binary" | awk '/=> \//{print $3} /^\t\//{print $1}' | while read -r lib; do
    mkdir -p "$stage/rootfs$(dirname "$lib")"
    cp -L "$lib" "$stage/rootfs$lib"
done

cat > "$stage/rootfs/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
accord:x:10001:10001:accord node:/var/lib/accord:/sbin/nologin
PASSWD
cat > "$stage/rootfs/etc/group" <<'GROUP'
root:x:0:
accord:x:10001:
GROUP

docker build --quiet --file deploy/Dockerfile --build-arg "VERSION=$version" \
    --tag "$tag" "$stage" >&2
echo "$tag"
