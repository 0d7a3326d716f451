#!/usr/bin/env bash
# Builds the embedded default rootfs at DEST from Debian packages: busybox-static for the
# tools and bash-static as /bin/bash (jobs are bash scripts read from stdin; the static build
# starts in ~0.1 ms where the dynamic one spends ~0.5 ms in the loader, on every job), plus
# libc6 for dynamically linked programs a user copies in.
# Only apt talks to the network. Idempotent: DEST/.warden-rootfs records the package versions
# and this script's hash; when they match nothing is done. Otherwise the tree is built in
# DEST.tmp and swapped in by rename.
#
# Usage: warden-rootfs DEST, or build-rootfs.sh DEST   (as root; .debs are cached in
#        $WARDEN_DEB_CACHE, default /var/cache/warden/debs; the checkout's
#        scripts/build-rootfs.sh sets it to build/debs)
set -euo pipefail

packages=(busybox-static bash-static libc6)

die() { echo "build-rootfs: $*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: $0 DEST"
[ "$(id -u)" = 0 ] || die "must run as root (ownership of the tree, chroot check)"

dest=$(realpath -m "$1")
cache=${WARDEN_DEB_CACHE:-/var/cache/warden/debs}
stamp_name=.warden-rootfs

# One apt-cache call for all packages (each call costs ~0.3 s): fills $version[pkg].
# Fails when a package has no installable version (package lists missing or stale).
declare -A version
read_candidates() {
    local p v
    version=()
    while read -r p v; do
        version[$p]=$v
    done < <(apt-cache policy "${packages[@]}" |
             awk '/^[^ ]/ { sub(":$", "", $1); p = $1 } $1 == "Candidate:" { print p, $2 }')
    for p in "${packages[@]}"; do
        v=${version[$p]:-}
        [ -n "$v" ] && [ "$v" != "(none)" ] || return 1
    done
}

refresh_lists() {
    echo "build-rootfs: refreshing apt package lists" >&2
    apt-get update -q >/dev/null
    read_candidates || die "no installable version of one of ${packages[*]}"
}

wanted_stamp() {
    local p
    echo "script $(sha256sum "$0" | cut -d' ' -f1)"
    for p in "${packages[@]}"; do
        echo "$p ${version[$p]}"
    done
}

# Prints the cached .deb holding package $1 at version $2, if any.
cached_deb() {
    local f
    for f in "$cache/$1"_*.deb; do
        [ -f "$f" ] || continue
        if [ "$(dpkg-deb -f "$f" Package)" = "$1" ] &&
           [ "$(dpkg-deb -f "$f" Version)" = "$2" ]; then
            echo "$f"
            return 0
        fi
    done
    return 1
}

download_missing() {
    local p v missing=()
    for p in "${packages[@]}"; do
        v=${version[$p]}
        cached_deb "$p" "$v" >/dev/null || missing+=("$p=$v")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    # apt's sandbox user cannot write into a root-owned cache; apt still checks the hashes.
    (cd "$cache" && apt-get -q -o APT::Sandbox::User=root download "${missing[@]}" >/dev/null)
}

# Stale package lists name versions the mirror no longer has: refresh them once and retry.
fetch_debs() {
    mkdir -p "$cache"
    download_missing && return 0
    refresh_lists
    download_missing || die "apt-get download ${packages[*]} failed"
}

# Symlinks every busybox applet at its usual place unless a real file is already there.
install_applets() {
    local stage=$1 applet
    while read -r applet; do
        case $applet in */*) ;; *) continue ;; esac   # skips /linuxrc
        [ -d "$stage/${applet%/*}" ] || mkdir -p "$stage/${applet%/*}"
        [ -e "$stage/$applet" ] || [ -L "$stage/$applet" ] || ln -s /bin/busybox "$stage/$applet"
    done < <("$stage/bin/busybox" --list-full)
}

write_etc() {
    local etc=$1/etc
    printf '%s\n' 'root:x:0:0:root:/root:/bin/bash' \
        'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' > "$etc/passwd"
    printf '%s\n' 'root:x:0:' 'tty:x:5:' 'nogroup:x:65534:' > "$etc/group"
    printf '%s\n' 'passwd: files' 'group: files' 'shadow: files' 'hosts: files dns' \
        > "$etc/nsswitch.conf"
    : > "$etc/hosts"
    : > "$etc/hostname"
    : > "$etc/resolv.conf"
    chmod 0644 "$etc"/{passwd,group,nsswitch.conf,hosts,hostname,resolv.conf}
}

build_stage() {
    local stage=$1 p d
    rm -rf "$stage"
    mkdir -p "$stage"
    for p in "${packages[@]}"; do
        dpkg-deb -x "$(cached_deb "$p" "${version[$p]}")" "$stage"
    done
    rm -rf "$stage"/usr/share/{doc,man,info,locale,lintian,bug}
    mv "$stage/bin/bash-static" "$stage/bin/bash"
    for d in bin sbin usr/bin usr/sbin etc root home dev proc sys run var/log mnt; do
        mkdir -p "$stage/$d"
    done
    chmod 0700 "$stage/root"
    mkdir -p "$stage/tmp" "$stage/var/tmp"
    chmod 1777 "$stage/tmp" "$stage/var/tmp"
    # /bin/sh is bash, not busybox ash: ash reads ahead on stdin, so scripts fed on stdin
    # that read their own remaining lines break under it (warden-facts §13.2).
    ln -sfn bash "$stage/bin/sh"
    install_applets "$stage"
    write_etc "$stage"
    chown -R 0:0 "$stage"
    chroot "$stage" /bin/bash -c 'echo ok' | grep -qx ok || die "bash does not run in $stage"
    chroot "$stage" /bin/sh -c '/bin/ls / >/dev/null' || die "busybox does not run in $stage"
}

# Refuses to replace a tree that live overlays use as their lower layer.
check_not_in_use() {
    if grep -F " overlay " /proc/self/mountinfo | tr ',: ' '\n\n\n' | grep -qxF "lowerdir=$dest"
    then
        die "$dest is the lower layer of mounted overlays; destroy those containers first"
    fi
}

read_candidates || refresh_lists
want=$(wanted_stamp)
if [ -d "$dest" ] && [ "$(cat "$dest/$stamp_name" 2>/dev/null)" = "$want" ]; then
    exit 0
fi

[ ! -e "$dest" ] || check_not_in_use
fetch_debs
want=$(wanted_stamp)   # fetch_debs may have refreshed the versions
mkdir -p "$(dirname "$dest")"
build_stage "$dest.tmp"
echo "$want" > "$dest.tmp/$stamp_name"
if [ -e "$dest" ]; then
    rm -rf "$dest.old"
    mv -T "$dest" "$dest.old"
    mv -T "$dest.tmp" "$dest"
    rm -rf "$dest.old"
else
    mv -T "$dest.tmp" "$dest"
fi
echo "build-rootfs: built $dest"
