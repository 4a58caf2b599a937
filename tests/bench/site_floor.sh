#!/usr/bin/env bash
# The physical floor of site.yml on one lab machine: the same package transactions, files, disk commands and
# service starts that a converge of site.yml made on an identical machine, as a plain script with no checks.
# tests/bench/site_floor.py runs it; it is not a way to provision anything.
#
# In /root/floor (put there by site_floor.py, taken from the converged twin):
#   files.tar      the files the converge wrote (apt source and key, units, programs, configuration; the
#                  networkd files with this machine's MACs and data address), extracted over /
#   transactions   the converge's apt-get command lines, one per line, in the order it ran them
#   holds          the packages it held
#   units          the ironserve units it enabled, in the order it enabled them
#   binaries       name version sha256, one per line: the cold tier's pinned binaries from the bundle
#   env            HOT_DEVICES, WARM_DEVICES, DATA_ADDRESS, BUNDLE_URL, S3_ADDRESS, BUCKETS
set -euo pipefail
cd /root/floor
# shellcheck source=/dev/null
. ./env
export DEBIAN_FRONTEND=noninteractive

step() { printf '%s floor: %s\n' "$(date +%s)" "$*"; }

step "files and the package source"
for source in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list; do
	if [ -e "$source" ]; then mv "$source" "$source.disabled"; fi
done
tar -x -f files.tar -C /
apt-get update -qq

step "the converge's package transactions"
while read -r -a command; do
	"${command[@]}" >/dev/null
done <transactions
xargs -r apt-mark hold <holds >/dev/null

step "networks"
systemctl start dbus.service
systemctl restart systemd-networkd.service
networkctl reload
for _ in $(seq 60); do
	if ip -o addr show | grep -q " ${DATA_ADDRESS} "; then break; fi
	sleep 1
done
ip -o addr show | grep -q " ${DATA_ADDRESS} " || { echo "floor: no data address ${DATA_ADDRESS}" >&2; exit 1; }
systemctl restart chrony.service

step "container runtime"
systemctl restart docker.service

step "hot tier"
read -r -a hot <<<"$HOT_DEVICES"
mdadm --create /dev/md/hot --run --metadata=1.2 --level=10 --name=hot --raid-devices="${#hot[@]}" --chunk=512 "${hot[@]}"
mkfs.xfs -q -L hot -d "su=512k,sw=$((${#hot[@]} / 2))" /dev/md/hot
mkdir -p /srv/models
echo "UUID=$(blkid -s UUID -o value /dev/md/hot) /srv/models xfs noatime 0 0" >>/etc/fstab

step "warm tier"
read -r -a warm <<<"$WARM_DEVICES"
mdadm --create /dev/md/warm --run --metadata=1.2 --level=1 --name=warm --raid-devices="${#warm[@]}" "${warm[@]}"
pvcreate -q /dev/md/warm
vgcreate -q warm /dev/md/warm
lvcreate -q -y -n data -l 100%FREE warm
mkfs.xfs -q -L warm /dev/warm/data
mkdir -p /srv/warm
echo "UUID=$(blkid -s UUID -o value /dev/warm/data) /srv/warm xfs noatime 0 0" >>/etc/fstab
systemctl daemon-reload
mount /srv/models
mount /srv/warm
mdadm --detail --brief /dev/md/hot /dev/md/warm >>/etc/mdadm/mdadm.conf
update-initramfs -u >/dev/null 2>&1

step "cold tier"
useradd --system --shell /usr/sbin/nologin --home-dir /srv/warm/seaweedfs --no-create-home seaweedfs
install -d -o seaweedfs -g seaweedfs -m 0750 /srv/warm/seaweedfs /srv/warm/seaweedfs/master /srv/warm/seaweedfs/volumes
chown seaweedfs:seaweedfs /etc/ironserve/seaweedfs-s3.json
install -d /opt/ironserve/bin
while read -r name version sha256; do
	target="/opt/ironserve/bin/$name-$version"
	python3 -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' \
		"${BUNDLE_URL%/}/files/$name/$version/$name" "$target"
	echo "$sha256  $target" | sha256sum --check --quiet
	chmod 0755 "$target"
	ln -sf "$target" "/usr/local/bin/$name"
done <binaries

step "services"
systemctl daemon-reload
while read -r unit; do
	systemctl enable --now "$unit" >/dev/null
done <units
s3_up() { python3 -c 'import socket, sys; socket.create_connection((sys.argv[1], 8333), 1)' "$S3_ADDRESS" 2>/dev/null; }
for _ in $(seq 120); do
	if s3_up; then break; fi
	sleep 1
done
s3_up || { echo "floor: no S3 gateway on ${S3_ADDRESS}:8333" >&2; exit 1; }
for bucket in $BUCKETS; do
	rclone --config /etc/ironserve/rclone.conf mkdir "cold:$bucket"
done
step "done"
