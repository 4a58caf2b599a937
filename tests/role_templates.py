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


def run_playbook(playbook: Path, inventory: str, variables: dict, *options: str) -> subprocess.CompletedProcess:
    """Run a playbook on this machine with the repository's own Ansible settings, whatever a caller's environment
    sets (Molecule's verify does); the caller asserts on the result."""
    return subprocess.run(
        [ANSIBLE, "-i", inventory, str(playbook), "-e", json.dumps(variables), *options],
        cwd=REPO,
        env={k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "MOLECULE_"))},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def render(folder: Path, templates: dict[Path, Path], variables: dict, vars_files: tuple[Path, ...] = ()) -> None:
    """Render each template (source -> destination) with ``variables``; fails with Ansible's output."""
    playbook = folder / "render.yml"
    items = [{"src": str(src), "dest": str(dest)} for src, dest in templates.items()]
    playbook.write_text(PLAYBOOK.format(vars_files=json.dumps([str(f) for f in vars_files]), items=json.dumps(items)))
    result = run_playbook(playbook, "localhost,", {"ansible_python_interpreter": sys.executable, **variables})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


NFT_TABLE = REPO / "roles" / "nft_table"


def render_nft_table(folder: Path, body: Path, name: str, variables: dict, vars_files: tuple[Path, ...]) -> str:
    """A role's firewall table as a host gets it: the role's body template, wrapped by roles/nft_table."""
    render(folder, {body: folder / f"{name}.body"}, variables, vars_files)
    table = {
        "nft_table_name": name,
        "nft_table_body": (folder / f"{name}.body").read_text(),
        "nft_table_description": f"{name} (rendered by a test)",
    }
    render(folder, {NFT_TABLE / "templates" / "table.nft.j2": folder / f"{name}.nft"}, table)
    return (folder / f"{name}.nft").read_text()


def nft_check_problem(text: str, folder: Path) -> str | None:
    """nft's own check of a ruleset file (changes nothing): None when valid, else nft's complaint; skips the
    calling test where nft is missing or may not run."""
    import pytest

    if shutil.which("nft") is None:
        pytest.skip("needs nftables")
    path = folder / "check.nft"
    path.write_text(text)
    result = subprocess.run(["nft", "-c", "-f", str(path)], capture_output=True, text=True, check=False)
    if "Operation not permitted" in result.stderr:
        pytest.skip("nft -c needs CAP_NET_ADMIN")
    return None if result.returncode == 0 else result.stderr
