"""ironserve doctor: controller and inventory checks that change nothing and, here, contact no host."""

from __future__ import annotations

from ironserve import cli, doctor, paths


def test_example_inventory_passes_without_contacting_anyone(capsys):
    # The example's addresses are documentation ranges: reachability must stay skipped for it.
    assert (
        cli.main(["doctor", "--inventory", str(paths.REPO_ROOT / "inventories/example"), "--skip-reachability"])
        == cli.EXIT_OK
    )
    out = capsys.readouterr().out
    assert (
        "ok   inventory: 3 host(s) in groups cold_storage, gpu_servers, inference_primary, inference_servers, "
        "inference_standby" in out
    )
    assert "ok   reachability: skipped (--skip-reachability)" in out


def test_vaulted_inventory_without_a_password_fails(tmp_path, monkeypatch):
    monkeypatch.delenv("ANSIBLE_VAULT_PASSWORD_FILE", raising=False)
    (tmp_path / "hosts.yml").write_text("all:\n  hosts:\n    h1:\n      ansible_connection: local\n")
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "secrets.yml").write_text("$ANSIBLE_VAULT;1.1;AES256\n6162\n")
    results = {c.name: c for c in doctor.check(tmp_path, reachability=False)}
    assert results["inventory"].ok
    assert not results["vaulted secrets"].ok
    assert "set ANSIBLE_VAULT_PASSWORD_FILE" in results["vaulted secrets"].detail
    password = tmp_path / "vault-pass"
    password.write_text("x\n")
    monkeypatch.setenv("ANSIBLE_VAULT_PASSWORD_FILE", str(password))
    assert {c.name: c for c in doctor.check(tmp_path, reachability=False)}["vaulted secrets"].ok


def test_reachability_of_local_hosts(tmp_path):
    (tmp_path / "hosts.yml").write_text(
        "all:\n  vars:\n    ansible_connection: local\n    ansible_python_interpreter: python3\n  hosts:\n    h1:\n"
    )
    results = {c.name: c for c in doctor.check(tmp_path / "hosts.yml")}
    assert results["reachability"].ok, results["reachability"].detail
    empty = tmp_path / "empty.yml"
    empty.write_text("all:\n  hosts: {}\n")
    assert not {c.name: c for c in doctor.check(empty)}["inventory"].ok
