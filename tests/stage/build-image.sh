#!/usr/bin/env bash
# Builds the stage's Debian 12 root file system for ARCH (arm64: a 64-bit Pi; armhf: a 32-bit one)
# through qemu-user, and packs it as an ext4 image with the kernel and initrd beside it:
#   build-image.sh ARCH OUTDIR   ->  OUTDIR/{root.img,vmlinuz,initrd.img}
# The recipe is this file: stage.sh keys its cache by its hash, so any change here rebuilds.
set -euo pipefail
arch=$1 out=$2
case $arch in
  arm64) kernel=linux-image-arm64 extra= ;;
  # 32-bit: the LPAE kernel boots on qemu's virt machine; python-rtmidi is built from source there.
  armhf) kernel=linux-image-armmp-lpae extra=,g++,libasound2-dev,libjack-jackd2-dev,python3-dev ;;
  *) echo "build-image: unknown arch $arch" >&2; exit 2 ;;
esac
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cadenza-stage-root.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
root=$tmp/root

# A small initramfs: only what finds the virtio disk (the default puts most modules in, twice as slow).
setup_hook='mkdir -p "$1/etc/initramfs-tools/conf.d" "$1/usr/share/initramfs-tools/modules.d"
echo MODULES=list > "$1/etc/initramfs-tools/conf.d/stage"
printf "%s\n" virtio_mmio virtio_pci virtio_blk virtio_net ext4 > "$1/usr/share/initramfs-tools/modules.d/stage"'

customize_hook='set -e
echo stage > "$1/etc/hostname"
printf "/dev/vda / ext4 rw,errors=remount-ro 0 1\nshare /mnt/share 9p trans=virtio,version=9p2000.L,msize=262144,nofail,x-systemd.device-timeout=10s 0 0\n" > "$1/etc/fstab"
mkdir -p "$1/mnt/share" "$1/etc/systemd/network"
printf "[Match]\nName=e*\n[Network]\nDHCP=yes\n" > "$1/etc/systemd/network/50-dhcp.network"
rm -f "$1/etc/resolv.conf"; echo "nameserver 10.0.2.3" > "$1/etc/resolv.conf"
# The ALSA sequencer with a "Midi Through" port, as a Pi with a USB synth has it (snd-virmidi is not built).
printf "9p\n9pnet_virtio\nsnd-seq\nsnd-seq-dummy\n" > "$1/etc/modules-load.d/stage.conf"
cp "'"$here"'/guest/stage-run.service" "$1/etc/systemd/system/stage-run.service"
chroot "$1" systemctl enable systemd-networkd.service stage-run.service
chroot "$1" passwd -d root
cp "$(ls "$1"/boot/vmlinuz-* | tail -n 1)" "$1/../vmlinuz"
cp "$(ls "$1"/boot/initrd.img-* | tail -n 1)" "$1/../initrd.img"'

mmdebstrap --mode=root --arch="$arch" --variant=apt \
  --include="systemd-sysv,$kernel,kmod,udev,dbus,procps,python3,python3-venv,alsa-utils,ca-certificates,make,sudo$extra" \
  --setup-hook="$setup_hook" --customize-hook="$customize_hook" \
  bookworm "$root"
mkdir -p "$out"
mv "$tmp/vmlinuz" "$tmp/initrd.img" "$out/"
rm -f "$out/root.img"
mkfs.ext4 -q -L stage -d "$root" "$out/root.img" 4G
