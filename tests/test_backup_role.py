"""The backup role's targets and settings as a site with an off-site store gets them, rendered on this machine (the
local connection, connecting nowhere): the S3 keys only in their own 0600 files, never in a loop's items (which
ansible-runner keeps in its artifacts) or in the settings restic's program reads."""

from __future__ import annotations

import json
import sys

from role_templates import REPO, run_playbook

COLD_KEY, COLD_SECRET = "ISCOLDKEY0123", "cold-secret-0123456789"
OFFSITE_KEY, OFFSITE_SECRET = "ISOFFSITE0123", "offsite-secret-0123456789"

PLAYBOOK = """
- name: The backup role's targets and settings
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    templates: {REPO}/roles/backup/templates
  tasks:
    - name: Work out the targets as the role does
      ansible.builtin.include_role:
        name: backup
        tasks_from: targets.yml
        public: true
    - name: Keep what a loop over the targets carries
      ansible.builtin.copy:
        content: "{{{{ _backup_targets | to_json }}}}"
        dest: "{{{{ out }}}}/targets.json"
        mode: "0600"
    - name: Render each target's settings as the role does
      ansible.builtin.template:
        src: "{{{{ templates }}}}/target.env.j2"
        dest: "{{{{ out }}}}/{{{{ item.name }}}}.env"
        mode: "0600"
      loop: "{{{{ _backup_targets }}}}"
    - name: Render the paths
      ansible.builtin.template:
        src: "{{{{ templates }}}}/paths.j2"
        dest: "{{{{ out }}}}/paths"
        mode: "0600"
    - name: Render the timers as the role does
      ansible.builtin.template:
        src: "{{{{ templates }}}}/ironserve-backup.timer.j2"
        dest: "{{{{ out }}}}/ironserve-{{{{ item.0 }}}}-{{{{ item.1.name }}}}.timer"
        mode: "0600"
      loop: "{{{{ ['backup', 'backup-check'] | product(_backup_targets) | list }}}}"
"""


def _render(tmp_path, **variables) -> dict:
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAYBOOK.format(REPO=REPO))
    settings = {
        "ansible_python_interpreter": sys.executable,
        "out": str(tmp_path),
        "backup_password": "a-long-enough-password",
        "cold_tier_s3_endpoint": "http://192.0.2.21:8333/",
        "backup_cold_access_key": COLD_KEY,
        "backup_cold_secret_key": COLD_SECRET,
        "backup_offsite_repository": "s3:https://s3.example.org/site-backups/",
        "backup_offsite_access_key": OFFSITE_KEY,
        "backup_offsite_secret_key": OFFSITE_SECRET,
        "backup_paths": ["/srv/warm/results"],
        **variables,
    }
    result = run_playbook(playbook, "localhost,", settings)
    assert result.returncode == 0, result.stdout[-3000:]
    return {p.name: p.read_text() for p in tmp_path.iterdir() if p.name != "play.yml"}


def test_each_target_has_its_repository_per_host_and_no_key_in_its_items(tmp_path):
    files = _render(tmp_path)
    targets = {t["name"]: t for t in json.loads(files["targets.json"])}
    assert targets["cold"]["repository_base"] == "s3:http://192.0.2.21:8333/backups"
    assert targets["offsite"]["repository_base"] == "s3:https://s3.example.org/site-backups"
    assert targets["cold"]["credentials"] == "/etc/ironserve/backup/cold-credentials.json"
    for text in files.values():
        for secret in (COLD_KEY, COLD_SECRET, OFFSITE_KEY, OFFSITE_SECRET, "a-long-enough-password"):
            assert secret not in text
    env = files["cold.env"]
    assert "IRONSERVE_BACKUP_HOST=localhost\n" in env
    assert "IRONSERVE_BACKUP_MAX_AGE_SECONDS=10800\n" in env
    assert "RESTIC_PASSWORD_FILE=/etc/ironserve/backup/password\n" in env
    assert "--keep-hourly 24 --keep-daily 7 --keep-weekly 5 --keep-monthly 12" in env
    assert "OnCalendar=daily\n" in files["ironserve-backup-offsite.timer"]
    assert "/srv/warm/results\n" in files["paths"]
    assert "/etc/ironserve\n" in files["paths"]


def test_without_keys_the_cold_target_uses_the_keys_the_cold_tier_generated(tmp_path):
    files = _render(tmp_path, backup_cold_access_key="", backup_cold_secret_key="", backup_offsite_repository="")
    (cold,) = json.loads(files["targets.json"])
    assert cold["credentials"] == "/etc/ironserve/s3-credentials.json"
    assert cold["given_keys"] is False
