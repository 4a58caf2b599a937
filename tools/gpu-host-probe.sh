#!/usr/bin/env bash
# Run the probe on the machine this script runs on (a real GPU host) and save what it saw, for a fixture.
# Usage: tools/gpu-host-probe.sh [OUT_DIR]   (needs ansible-core; run from the repository root)
set -euo pipefail
out=${1:-${OUT:-artifacts/gpu-host}}
mkdir -p "$out"
if command -v nvidia-smi >/dev/null; then nvidia-smi -q -x > "$out/nvidia-smi-q-x.xml" || true; fi
ANSIBLE_MODULE_UTILS=module_utils ANSIBLE_LOAD_CALLBACK_PLUGINS=1 ANSIBLE_STDOUT_CALLBACK=ansible.posix.json \
  ansible localhost -c local -M library -m ironserve_probe --extra-vars ansible_python_interpreter=python3 \
  > "$out/probe.json"
python3 - "$out/probe.json" <<'PY'
import json, sys
text = open(sys.argv[1]).read()
document, _ = json.JSONDecoder().raw_decode(text[text.index("{"):])  # other callbacks print around it
result = document["plays"][0]["tasks"][0]["hosts"]["localhost"]
hw = result["ansible_facts"]["ironserve_hw"]
print(f"GPUs: {hw['gpu']['count']} {hw['gpu']['models']} driver {hw['gpu']['driver_version']} "
      f"NVSwitch {hw['gpu']['nvswitch']}; disks {len(hw['storage']['disks'])}; NICs {len(hw['network']['nics'])}")
print("not determined:", hw["unknown"])
PY
