"""Render a role's templates as Ansible renders them, on this machine: a one-task play on localhost with the local
connection (connects nowhere), the repository's own Ansible settings whatever the caller's environment sets."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ANSIBLE = shutil.which("ansible-playbook", path=str(REPO / ".venv" / "bin")) or shutil.which("ansible-playbook")
PLAYBOOK = """
- name: Render role templates
  hosts: localhost
  connection: local
  gather_facts: false
  vars_files: {vars_files}
  tasks:
    - name: Render each
      ansible.builtin.template:
        src: "{{{{ item.src }}}}"
        dest: "{{{{ item.dest }}}}"
        mode: "0640"
      loop: {items}
"""


def render(folder: Path, templates: dict[Path, Path], variables: dict, vars_files: tuple[Path, ...] = ()) -> None:
    """Render each template (source -> destination) with ``variables``; fails with Ansible's output."""
    playbook = folder / "render.yml"
    items = [{"src": str(src), "dest": str(dest)} for src, dest in templates.items()]
    playbook.write_text(PLAYBOOK.format(vars_files=json.dumps([str(f) for f in vars_files]), items=json.dumps(items)))
    result = subprocess.run(
        [
            ANSIBLE,
            "-i",
            "localhost,",
            str(playbook),
            "-e",
            json.dumps({"ansible_python_interpreter": sys.executable, **variables}),
        ],
        cwd=REPO,
        # The repository's own Ansible settings, whatever a caller's environment sets (Molecule's verify does).
        env={k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "MOLECULE_"))},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
