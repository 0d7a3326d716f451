#!/bin/busybox sh
# /init of the guest's initramfs: builds the guest's whole mount table, then switch_root runs
# the init script named by warden_guest.init= from it. Static busybox in RAM does this in a
# fraction of the time the host's dynamic tools would take over 9p under emulation.
#   /                 overlay: the host's root (virtio-9p tag "hostroot", exported read-only)
#                     under a RAM upper layer, so the venv, wshd and /lib/modules are there
#   /proc /sys /dev /dev/pts /dev/shm /run    as on a distribution (no udev: static nodes)
#   /sys/fs/cgroup    cgroup2 and nothing else (the kernel runs with cgroup_no_v1=all)
#   /run/warden-guest-disk   the ext4 scratch disk (virtio-blk): /tmp and /var/tmp are binds
#                     of it, since idmapped mounts need ext4 on 6.1 (not 9p; tmpfs from 6.3)
/bin/busybox --install -s /bin
export PATH=/bin
root=/newroot
disk=/run/warden-guest-disk

fail() {
    echo "WARDEN-GUEST-ERROR initramfs: $*"
    poweroff -f
}

mount -t proc proc /proc
for module in $(cat /lib/modules/load.order); do
    insmod "/lib/modules/$module" || fail "insmod $module"
done
guest_init=$(tr ' ' '\n' < /proc/cmdline | sed -n 's/^warden_guest.init=//p')
[ -n "$guest_init" ] || fail "no warden_guest.init= on the kernel command line"

mkdir -p /host /ram
# cache=loose: the export is read-only and lives for one run, so the guest may cache freely.
mount -t 9p -o ro,trans=virtio,version=9p2000.L,msize=512000,cache=loose hostroot /host \
    || fail "mount the host's root over 9p"
mount -t tmpfs -o mode=0755 ram /ram || fail "mount tmpfs for the overlay's upper layer"
mkdir -p /ram/upper /ram/work
mount -t overlay -o lowerdir=/host,upperdir=/ram/upper,workdir=/ram/work root "$root" \
    || fail "mount the overlay root"
[ -r "$root$guest_init" ] || fail "no $guest_init on the host's root"

mount -t proc proc "$root/proc" || fail "mount /proc"
mount -t sysfs sysfs "$root/sys" || fail "mount /sys"
mount -t devtmpfs devtmpfs "$root/dev" || fail "mount /dev"
mkdir -p "$root/dev/pts" "$root/dev/shm"
mount -t devpts -o mode=0620,ptmxmode=0666 devpts "$root/dev/pts" || fail "mount /dev/pts"
mount -t tmpfs -o mode=1777 shm "$root/dev/shm" || fail "mount /dev/shm"
# devtmpfs has only device nodes; udev makes these links on a distribution (bash's <(...) needs /dev/fd)
ln -s /proc/self/fd "$root/dev/fd"
for n in 0:stdin 1:stdout 2:stderr; do
    ln -s "/proc/self/fd/${n%%:*}" "$root/dev/${n#*:}"
done
# The nodes whose first open loads their module (loop-control, btrfs-control, net/tun, ...):
# kmod static-nodes makes them on a distribution; losetup and mount -o loop need loop-control.
while read -r module name dev; do
    case $module in \#* | "") continue ;; esac
    numbers=${dev#?}
    mkdir -p "$(dirname "$root/dev/$name")"
    mknod -m 0600 "$root/dev/$name" "${dev%"$numbers"}" "${numbers%:*}" "${numbers#*:}"
done < "$root/lib/modules/$(uname -r)/modules.devname"
mount -t tmpfs -o mode=0755 run "$root/run" || fail "mount /run"
mount -t cgroup2 -o nsdelegate cgroup2 "$root/sys/fs/cgroup" || fail "mount cgroup2"
mount -t bpf bpf "$root/sys/fs/bpf"
mount -t debugfs debugfs "$root/sys/kernel/debug"

# A checkout under /tmp or /var/tmp (a CI clone) would vanish under the scratch disk: its
# host view is kept aside and bound back at its own path.
checkout=${guest_init%/warden_framework/testing/guest/init.sh}
aside=/run/warden-guest-checkout
mkdir -p "$root$aside"
mount --bind "$root$checkout" "$root$aside" || fail "bind the checkout $checkout aside"
mkdir -p "$root$disk"
mount -t ext4 -o noinit_itable "$root/dev/vda" "$root$disk" || fail "mount the scratch disk /dev/vda"
mount --bind "$root$disk/tmp" "$root/tmp" || fail "bind the scratch disk on /tmp"
mount --bind "$root$disk/var-tmp" "$root/var/tmp" || fail "bind the scratch disk on /var/tmp"
if [ ! -r "$root$guest_init" ]; then
    mkdir -p "$root$checkout" && mount --bind "$root$aside" "$root$checkout" \
        || fail "bind the checkout back at $checkout"
fi
umount "$root$aside"

umount /proc
exec switch_root "$root" /bin/sh "$guest_init"
