def test_role_playbook_applies_the_roles_to_the_hosts(tmp_path):
    import yaml
    from lab_ansible import role_playbook

    playbook = role_playbook(tmp_path, "net-a", "mgmt_network", "data_network")
    assert yaml.safe_load(playbook.read_text()) == [
        {
            "name": "Apply mgmt_network, data_network",
            "hosts": "net-a",
            "become": True,
            "gather_facts": True,
            "roles": ["mgmt_network", "data_network"],
        }
    ]
    quiet = yaml.safe_load(
        role_playbook(tmp_path, "all", "package_source", become=False, gather_facts=False).read_text()
    )
    assert (quiet[0]["become"], quiet[0]["gather_facts"]) == (False, False)
