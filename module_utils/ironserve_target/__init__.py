"""Code that runs on the target hosts: the modules in library/ import it as ``ansible.module_utils.ironserve_target``
and the controller as ``ironserve_target`` (pyproject.toml installs this folder as that package). Stdlib only, and
nothing from the ironserve package: Ansible ships it to every host. Its modules import each other relatively, the one
form that works in both places.
"""
