#!/usr/bin/env bash
# The GPU stack's checks against a real driver, for a lent GPU machine (the 'device' tool) or any GPU host.
# Stdlib Python only, so it runs on a bare machine (in well under five minutes): the probe, the driver rules
# (flavour, branch, Fabric Manager) for the GPUs it finds and for both driver sources, the loaded module's flavour
# and version against them, nvidia-smi's GPUs (address and model) against the probe's, what the rules say from the
# PCI id alone (name, architecture, compute capability, memory) against nvidia-smi, MIG instances, the model
# plan, and the engines (tools/gpu-engine-check.py). With ansible-playbook on PATH it also runs the driver role's own plan and refusals (read-only).
# Usage (repository root): tools/gpu-device-check.sh [OUT_DIR]; exit 0 when every check passes.
set -euo pipefail
out=${1:-${OUT:-artifacts/gpu-device}}
mkdir -p "$out"
if command -v nvidia-smi >/dev/null; then nvidia-smi -q -x > "$out/nvidia-smi-q-x.xml" || true; fi
status=0
PYTHONPATH=module_utils:. python3 - "$out" <<'PY' || status=$?
import json, os, subprocess, sys

from ironserve import driver_policy, planner
from ironserve_target import gpu_ids, probe

out = sys.argv[1]
hw = probe.probe(probe.System("/", None))
json.dump(hw, open(os.path.join(out, "probe.json"), "w"), indent=2)
gpus = [g for g in hw["gpu"]["gpus"] if g["vendor"] == "nvidia"]
failures = [] if gpus else ["the probe found no NVIDIA GPU"]
print(f"probe: {len(gpus)} NVIDIA GPU(s) {sorted({g['model'] for g in gpus})}, driver {hw['gpu']['driver_version']}, "
      f"NVSwitch {hw['gpu']['nvswitch']}, Secure Boot {hw['host']['secure_boot']}")
branch = int((hw["gpu"]["driver_version"] or "0").split(".")[0])
plan = driver_policy.driver_plan(hw["gpu"], "cuda_repo", branch, None, hw["host"]["secure_boot"], False)
print(f"driver rules: flavour {plan['flavour']}, Fabric Manager {plan['fabric_manager']}, problems {plan['problems']}")
failures += plan["problems"]
try:
    version = open("/proc/driver/nvidia/version").read()
    loaded = "open" if "Open Kernel Module" in version else "proprietary"
    print(f"loaded module: {loaded} - {version.splitlines()[0]}")
    if plan["flavour"] and loaded != plan["flavour"]:
        failures.append(f"the loaded module is {loaded}, the rules choose {plan['flavour']}")
except OSError:
    failures.append("no NVIDIA kernel module is loaded (/proc/driver/nvidia/version missing)")
try:
    query = ["nvidia-smi", "--query-gpu=pci.bus_id,pci.device_id,name", "--format=csv,noheader"]
    smi = subprocess.run(query, capture_output=True, text=True)
    lines = smi.stdout.splitlines() if smi.returncode == 0 else []
except FileNotFoundError:
    lines = []
print(f"nvidia-smi: {len(lines)} GPU(s) {lines}")
failures += driver_policy.smi_mismatches(gpus, lines)
# What the rules say from the PCI id alone (a host before its driver loads) against what the loaded driver reports.
fields = "pci.bus_id,pci.device_id,name,compute_cap,memory.total,mig.mode.current"
try:
    smi = subprocess.run(["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader,nounits"],
                         capture_output=True, text=True)
    rows = [[f.strip() for f in line.split(",")] for line in smi.stdout.splitlines()] if smi.returncode == 0 else []
except FileNotFoundError:
    rows = []
for bus_id, device_id, name, capability, memory_mib, mig in rows:
    rules = gpu_ids.describe_gpu(gpu_ids.NVIDIA_VENDOR, device_id)
    from_smi = gpu_ids.ARCHITECTURE_OF_CAPABILITY.get(capability)
    print(f"{bus_id}: nvidia-smi {name}, cc {capability}, {memory_mib} MiB, MIG {mig}; rules from the PCI id: "
          f"{rules['model']} ({rules['name_source']}), {rules['architecture']} ({rules['architecture_source']}), "
          f"cc {rules['compute_capability']}, {rules['memory_gib']} GiB, open modules {rules['open_kernel_module']}")
    if from_smi and rules["architecture"] != from_smi:
        failures.append(f"{bus_id}: the rules place {device_id} in {rules['architecture']}, nvidia-smi's cc "
                        f"{capability} says {from_smi}")
    if rules["memory_gib"] and memory_mib.isdigit() and abs(rules["memory_gib"] * 1024 - int(memory_mib)) > 0.1 * int(memory_mib):
        failures.append(f"{bus_id}: the table says {rules['memory_gib']} GiB, nvidia-smi {memory_mib} MiB")
for source, branch in (("distribution", 550), ("cuda_repo", 580)):
    other = driver_policy.driver_plan(hw["gpu"], source, branch, None, hw["host"]["secure_boot"], True)
    print(f"driver rules for {source} {branch}: flavour {other['flavour']}, problems {other['problems']}")
for g in gpus:
    if g.get("mig_mode") == "Enabled":
        print(f"{g['pci_address']}: MIG instances (MiB): {[m['memory_mib'] for m in g['mig_devices']]}")
print(f"model plan: {json.dumps(planner.plan_for_host(hw['gpu']))}")
json.dump({"plan": plan, "failures": failures}, open(os.path.join(out, "checks.json"), "w"), indent=2)
print("FAILED:\n  - " + "\n  - ".join(failures) if failures else "all GPU stack checks passed")
sys.exit(1 if failures else 0)
PY
# The engine images against the loaded driver; with Docker, an engine image and a distill's weights already here,
# one engine served the way the inference role launches it (pulls and downloads nothing).
python3 tools/gpu-engine-check.py "$out" || status=1
# With ansible-playbook on PATH: the driver role's own plan and refusals (read-only; the GPU stage itself would
# install and reboot, which a check on somebody else's machine must not).
if command -v ansible-playbook >/dev/null; then
  printf 'all:\n  children:\n    gpu_servers:\n      hosts:\n        localhost:\n          ansible_connection: local\n' > "$out/inventory.yml"
  printf -- '- name: Driver plan\n  hosts: gpu_servers\n  become: true\n  gather_facts: false\n  tasks:\n    - name: Plan\n      ansible.builtin.include_role:\n        name: nvidia_driver\n        tasks_from: preflight\n' > "$out/driver-plan.yml"
  PYTHONPATH=module_utils:. ANSIBLE_LIBRARY=library ANSIBLE_MODULE_UTILS=module_utils ANSIBLE_FILTER_PLUGINS=filter_plugins ANSIBLE_ROLES_PATH=roles \
    ansible-playbook -i "$out/inventory.yml" -e ansible_python_interpreter=/usr/bin/python3 \
    -e nvidia_driver_source=cuda_repo -e nvidia_driver_cuda_repo_key_file=none \
    "$out/driver-plan.yml" > "$out/driver-plan.log" 2>&1 || status=1
  tail -5 "$out/driver-plan.log"
fi
exit "$status"
