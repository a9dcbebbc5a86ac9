#!/bin/bash
# Inside the stage guest, started at each boot by stage-run.service (from the 9p share).
# First boot: pip settings and the tree in place, then the scenario's first part, then a reboot.
# Second boot: the scenario's second part, then power-off. Whatever happens, the machine powers off.
share=/mnt/share
state=/var/lib/stage
mkdir -p "$state"
finish() { sync; systemctl --no-block "$1"; exit 0; }
trap 'finish poweroff' ERR
boot=$(( $(cat "$state/boots" 2>/dev/null || echo 0) + 1 ))
echo "$boot" > "$state/boots"
if [ "$boot" = 1 ]; then
  # pip as this machine's host uses it (the index settings and the CA bundle, carried in the share).
  [ -f "$share/ca.crt" ] && install -m 0644 "$share/ca.crt" /etc/ssl/certs/stage-pip-ca.crt
  [ -f "$share/pip.conf" ] && install -m 0644 "$share/pip.conf" /etc/pip.conf
  rm -rf /root/cadenza && mkdir -p /root/cadenza && tar -xf "$share/cadenza.tar" -C /root/cadenza
fi
if [ "$boot" -gt 2 ]; then finish poweroff; fi   # never loop
python3 "$share/scenario.py" --part "$boot" --share "$share" --tree /root/cadenza \
  > >(tee -a "$share/scenario.log") 2>&1
if [ -e "$state/reboot" ] && [ "$boot" = 1 ]; then
  rm -f "$state/reboot"
  finish reboot
fi
touch "$share/done"
finish poweroff
