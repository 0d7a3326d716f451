#!/usr/bin/env bash
# run-guest.sh - run the setquota driver's own code in a throw-away qemu guest booted with
# Debian's stock kernel (which has the vfs quota format this host's kernel lacks).
#
#   bash plugins/quota_disk/tests/guest/run-guest.sh      # build + boot, prints GUEST lines
#
# Recipe after shared/tools/quota-guest.sh: the guest is emulated (TCG; /dev/kvm here only
# boots PVM guests). The initramfs holds busybox, the ext4/quota/loop modules, setquota and
# repquota with their libraries, Debian's python3 with just the stdlib modules the check
# imports (found by running guest_check.py --list-files on the host), pluggy/stevedore/yaml
# from the venv, the warden_framework and warden_quota_disk sources, and an ext4 image made
# with `mkfs.ext4 -O quota`. The guest mounts it with usrquota, runs guest_check.py, then
# (remounted with usrquota, guest_check's files gone) the framework's disk contract against
# SetquotaDriver with pytest (guest_contract.py; output prefixed GUEST-PYTEST),
# and powers off. Exit 77 with `SKIP: <why>` when this host cannot build or boot the guest.
set -euo pipefail
export LC_ALL=C

here=$(cd "$(dirname "$0")" && pwd)
plugin=$(cd "$here/../.." && pwd)
top=$(cd "$plugin/../.." && pwd)
modules_wanted=(crc32c_generic crc16 mbcache jbd2 ext4 quota_tree quota_v2 loop)
guest_uid=10000

skip() { echo "SKIP: $*"; exit 77; }

check_host() {
    local tool
    [ "${WARDEN_GUEST:-}" != 1 ] || skip "already inside the warden test guest, where a nested emulated guest takes many minutes"
    for tool in qemu-system-x86_64 mkfs.ext4 cpio gzip ldd setquota repquota busybox; do
        command -v "$tool" > /dev/null || skip "$tool is not installed (see scripts/bootstrap.sh)"
    done
    vmlinuz=$(ls /boot/vmlinuz-*-amd64 2> /dev/null | sort -V | tail -1 || true)
    [ -n "$vmlinuz" ] || skip "no Debian kernel /boot/vmlinuz-*-amd64 (apt-get install linux-image-amd64)"
    kv=${vmlinuz#/boot/vmlinuz-}
    [ -d "/lib/modules/$kv" ] || skip "no /lib/modules/$kv for $vmlinuz"
    python=$(readlink -f /usr/bin/python3 || true)
    [ -x "$python" ] || skip "no Debian python3 at /usr/bin/python3 (apt-get install python3-minimal)"
    venv_python=$top/.venv/bin/python
    [ -x "$venv_python" ] || skip "no venv at $top/.venv (run scripts/bootstrap.sh)"
    site=$("$venv_python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    local want have
    want=$("$venv_python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    have=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    [ "$want" = "$have" ] || skip "Debian python is $have but the venv's packages are for $want"
}

copy_with_libs() {  # copy_with_libs ROOT FILE...: each file at its own path, plus its libraries
    local root=$1 file lib
    shift
    for file in "$@"; do
        mkdir -p "$root$(dirname "$file")" && cp -pL "$file" "$root$file"
        case $file in *.py | *.pyc) continue ;; esac
        for lib in $(ldd "$file" 2> /dev/null | grep -oE '/[^ ]+\.so[^ ]*' || true); do
            [ -e "$root$lib" ] || { mkdir -p "$root$(dirname "$lib")" && cp -L "$lib" "$root$lib"; }
        done
    done
}

build() {  # build DIR: DIR/initrd.gz
    local dir=$1 q=$1/root m=/lib/modules/$kv mod link path
    mkdir -p "$q"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,etc,lib/modules,mnt,tmp,guest}
    cp /bin/busybox "$q/bin/busybox"
    for link in $(busybox --list-full); do
        [ -e "$q/$link" ] || ln -s /bin/busybox "$q/$link"
    done
    for mod in "${modules_wanted[@]}"; do
        path=$(find "$m" -name "$mod.ko" | head -1)
        [ -n "$path" ] || skip "module $mod.ko missing in $m"
        cp "$path" "$q/lib/modules/"
    done
    copy_with_libs "$q" "$(command -v setquota)" "$(command -v repquota)" "$python"
    ln -sf "$(basename "$python")" "$q/usr/bin/python3"
    # Python files: exactly what guest_check.py and the contract's pytest run load, at the
    # same paths as on this host, copied now so the guest runs the current sources.
    path_entries=$plugin:$top:$site
    "$python" -S "$here/guest_check.py" --list-files --path "$path_entries" > "$dir/files"
    "$python" -S "$here/guest_contract.py" --list-files --path "$path_entries" --top "$top" \
        >> "$dir/files"
    mapfile -t files < <(sort -u "$dir/files")
    copy_with_libs "$q" "${files[@]}"
    # Bytecode for sources that have none (this tree is run with PYTHONDONTWRITEBYTECODE):
    # compiling them here saves seconds in the emulated guest. Paths in it stay the real ones.
    "$python" -S -m compileall -q -s "$q" -p / "$q$top" > /dev/null
    cp "$here/guest_check.py" "$here/guest_contract.py" "$q/guest/"
    printf 'root:x:0:0:root:/root:/bin/sh\n' > "$q/etc/passwd"
    printf 'root:x:0:\n' > "$q/etc/group"
    truncate -s 64M "$q/disk.img"
    mkfs.ext4 -q -F -O quota -E quotatype=usrquota "$q/disk.img"
    cat > "$q/init" << EOF
#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
echo "GUEST-BOOT kernel \$(uname -r), init reached at \$(cut -d' ' -f1 /proc/uptime) s"
for m in ${modules_wanted[*]}; do
    insmod /lib/modules/\$m.ko || echo "GUEST-ERROR insmod \$m failed"
done
losetup /dev/loop0 /disk.img
mount -t ext4 -o usrquota /dev/loop0 /mnt || echo "GUEST-ERROR mount failed"
/usr/bin/python3 -S /guest/guest_check.py --path "$path_entries" --mount /mnt \\
    --device /dev/loop0 --uid $guest_uid
echo "GUEST-CONTRACT start at \$(cut -d' ' -f1 /proc/uptime) s"
umount /mnt && mount -t ext4 -o usrquota /dev/loop0 /mnt || echo "GUEST-ERROR remount failed"
rm -rf /mnt/depot && mkdir /mnt/contract
WARDEN_TEST_QUOTA_DEPOT=/mnt/contract /usr/bin/python3 -S /guest/guest_contract.py \\
    --path "$path_entries" --top "$top" 2>&1 | sed 's/^/GUEST-PYTEST /'
echo "GUEST-UPTIME \$(cut -d' ' -f1 /proc/uptime) s"
poweroff -f
EOF
    chmod +x "$q/init"
    (cd "$q" && find . | cpio -o -H newc 2> /dev/null | gzip -1 > "$dir/initrd.gz")
    rm -rf "$q"
}

check_host
dir=$(mktemp -d /var/tmp/quota-disk-guest.XXXXXX)
trap 'rm -rf "$dir"' EXIT
build "$dir"
bios=()
[ -f /usr/share/qemu/qboot.rom ] && bios=(-bios /usr/share/qemu/qboot.rom)
start=${EPOCHREALTIME/./}
timeout 150 qemu-system-x86_64 -accel tcg -cpu max -m 512 -smp 1 -nic none "${bios[@]}" \
    -kernel "$vmlinuz" -initrd "$dir/initrd.gz" -nographic -no-reboot \
    -append 'console=ttyS0 panic=-1 quiet' < /dev/null 2>&1 | tr -d '\r' | grep -a '^GUEST' || true
end=${EPOCHREALTIME/./}
echo "host wall time for build + boot + checks: $(((end - start) / 1000)) ms (initrd $(du -k "$dir/initrd.gz" | cut -f1) KiB)"
