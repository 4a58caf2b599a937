#!/bin/sh
# ironserve-rdma-state TEXTFILE [SYSFS]: every RDMA port's state for node_exporter's textfile collector.
#
# Why our own: node_exporter 1.9.0 (Debian 13's) reads a port's state and its counters together and gives up on the
# whole infiniband collector when a device has no counters/ folder, as soft-RoCE (rxe) and Broadcom's RoCE NICs
# have not (fixed in procfs after that release: prometheus/procfs#687). The state alone is what the alert needs.
# Values as the kernel numbers them (and node_infiniband_state_id): 1 DOWN, 2 INIT, 3 ARMED, 4 ACTIVE.
set -eu
textfile=$1
sysfs=${2:-/sys}
temporary=$(mktemp "$textfile.XXXXXX")
trap 'rm -f "$temporary"' EXIT
{
    echo "# HELP ironserve_rdma_port_state_id RDMA port state (1 DOWN, 2 INIT, 3 ARMED, 4 ACTIVE)."
    echo "# TYPE ironserve_rdma_port_state_id gauge"
    echo "# HELP ironserve_rdma_port_physical_state_id RDMA port physical state (5 LinkUp)."
    echo "# TYPE ironserve_rdma_port_physical_state_id gauge"
    for port in "$sysfs"/class/infiniband/*/ports/*; do
        [ -r "$port/state" ] || continue
        device=$(basename "$(dirname "$(dirname "$port")")")
        number=$(basename "$port")
        labels="device=\"$device\",port=\"$number\""
        echo "ironserve_rdma_port_state_id{$labels} $(cut -d: -f1 "$port/state")"
        if [ -r "$port/phys_state" ]; then
            echo "ironserve_rdma_port_physical_state_id{$labels} $(cut -d: -f1 "$port/phys_state")"
        fi
    done
} > "$temporary"
chmod 0644 "$temporary"
mv "$temporary" "$textfile"
trap - EXIT
