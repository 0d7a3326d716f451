#!/bin/sh
# PID 1 of the guest after switch_root: the mount table is ready (initramfs_init.sh). Runs the
# job the runner wrote on the scratch disk: binds its copy of the default rootfs over the
# checkout's (ext4, for idmapped mounts), runs pytest as root in the checkout with its output
# on ttyS1 (the runner's stdout; the kernel's console is ttyS0, a log file on the host),
# reports pytest's exit status in a marker line and powers off.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
out=/dev/ttyS1
disk=/run/warden-guest-disk

guest_uptime() { read -r seconds _ < /proc/uptime && echo "$seconds"; }

report() {
    echo "$*" > "$out"
    busybox stty -F "$out" raw  # returns once the tty has sent everything (TCSADRAIN)
}

fail() {
    report "WARDEN-GUEST-ERROR init.sh: $*"
    busybox poweroff -f
}

busybox stty -F "$out" raw -echo || fail "set up $out"
. "$disk/job.env" || fail "read $disk/job.env"
if [ -n "$rootfs" ]; then
    busybox mount --bind "$disk/rootfs" "$rootfs" || fail "bind the scratch disk's rootfs on $rootfs"
fi
busybox ip link set lo up || fail "ip link set lo up"
busybox hostname warden-guest

# The root is writable (RAM), so bytecode and pytest's cache may be written: they vanish.
export HOME=/root WARDEN_GUEST=1 TERM=dumb
cd "$workdir" || fail "cd $workdir"
report "WARDEN-GUEST-START $(guest_uptime)"
"$python" -m pytest "$@" < /dev/null > "$out" 2>&1
rc=$?
report "WARDEN-GUEST-RC $rc $(guest_uptime)"
busybox poweroff -f
