#!/bin/busybox sh
# PID 1 of the power-cut guest: loads the virtio and ext4 modules, brings up the user-mode network
# (10.0.2.15, qemu's slirp), mounts the data disk /dev/vda on /mnt/data and runs the server named on
# the kernel command line (powercut.server=natrix|nats-server) with its store there. It never
# returns: when the server exits (or on any failure) it powers the machine off, so qemu exits.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev

# A bound on the machine's life, should the host side die without killing qemu (it daemonizes).
(sleep 3600; echo "POWERCUT-FAIL: one hour up, powering off"; poweroff -f) &

fail() {
    echo "POWERCUT-FAIL: $*"
    poweroff -f
}

for m in $(cat /etc/modules.order); do
    insmod "/lib/modules/$m" || fail "insmod $m"
done

server=natrix
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        powercut.server=*) server="${arg#powercut.server=}" ;;
    esac
done

i=0
while [ ! -b /dev/vda ]; do
    i=$((i + 1))
    [ "$i" -gt 100 ] && fail "no /dev/vda after 10 s"
    sleep 0.1
done

ip link set lo up
ip link set eth0 up || fail "no eth0"
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2

mkdir -p /mnt/data
# The default ext4 mount (data=ordered, barriers on): what a server's data disk runs with.
mount -t ext4 /dev/vda /mnt/data || fail "mount /dev/vda"
echo "POWERCUT-DISK: write_cache=$(cat /sys/block/vda/queue/write_cache) fua=$(cat /sys/block/vda/queue/fua 2>/dev/null)"
mkdir -p /mnt/data/store
conf=""
[ -f /etc/server.conf ] && conf="-c /etc/server.conf"
echo "POWERCUT-START: $server $conf"
case "$server" in
    natrix) /bin/natrix-server $conf -js -sd /mnt/data/store -a 0.0.0.0 -p 4222 ;;
    nats-server) /bin/nats-server -js -sd /mnt/data/store -a 0.0.0.0 -p 4222 ;;
    *) fail "unknown server $server" ;;
esac
echo "POWERCUT-EXIT: $server status $?"
umount /mnt/data
poweroff -f
