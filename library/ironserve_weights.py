#!/usr/bin/python
"""Ansible module: stage model weights onto the hot tier, verified against a sha256 manifest."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ironserve_weights
short_description: Stage model weights from a local path, NFS, HTTP or S3 source, verified and switched in atomically
description:
  - Copies every file a sha256 manifest lists from O(source) into O(dest)/O(name)/O(revision), resuming partial
    files, verifying each against the manifest, then points O(dest)/O(name)/current at the revision with one rename.
  - A revision already verified for the same manifest is skipped without reading its files again.
  - A file whose sha256 differs from the manifest is discarded and the module fails; C(current) is left as it was.
version_added: "0.1.0"
author: ironserve
options:
  source:
    description:
      - A folder on the host (local disk or an NFS mount), an http(s) URL (the offline bundle, a web server), or
        C(s3://bucket/prefix) (the cold tier, or any S3 store; needs O(s3_endpoint) and O(s3_credentials_file)).
    type: str
    required: true
  s3_endpoint:
    description: The S3 endpoint URL for an C(s3://) source (path-style addressing).
    type: str
  s3_credentials_file:
    description: A JSON file on the host with C(access_key) and C(secret_key) (the cold tier writes one, 0600).
    type: path
    default: /etc/ironserve/s3-credentials.json
  s3_region:
    description: The region the signature names.
    type: str
    default: us-east-1
  dest:
    description: The hot tier's model folder.
    type: path
    default: /srv/models
  name:
    description: The model's folder name under O(dest).
    type: str
    required: true
  revision:
    description: The revision's folder name (a Hugging Face commit, or a site's own version).
    type: str
    required: true
  manifest:
    description:
      - The sha256 manifest (C(sha256sum) format) as text. Pin it in the inventory for a source you do not fully trust.
      - When omitted, C(SHA256SUMS) is read from the source.
    type: str
  parallel:
    description:
      - Files fetched at once. Each is hashed as it arrives, so every byte is read once; before the first, the
        revision's missing bytes (sizes from the source, HEAD for remote ones) are checked against the free space.
    type: int
    default: 4
attributes:
  check_mode:
    support: full
    description: Reports what would be fetched and whether current would move, writing nothing.
"""

EXAMPLES = r"""
- name: Stage the R1 distill from the cold tier's models bucket
  ironserve_weights:
    source: s3://models/DeepSeek-R1-Distill-Qwen-7B/916b56a44061fd5cd7d6a8fb632557ed4f724f60
    s3_endpoint: http://192.0.2.11:8333
    name: DeepSeek-R1-Distill-Qwen-7B
    revision: 916b56a44061fd5cd7d6a8fb632557ed4f724f60

- name: Stage the R1 distill from the offline bundle
  ironserve_weights:
    source: "http://10.0.2.100/weights/DeepSeek-R1-Distill-Qwen-7B"
    dest: /srv/models
    name: DeepSeek-R1-Distill-Qwen-7B
    revision: 916b56a44061fd5cd7d6a8fb632557ed4f724f60
"""

RETURN = r"""
path:
  description: The revision's folder.
  returned: always
  type: str
current:
  description: The link the inference containers mount.
  returned: always
  type: str
fetched_files:
  description: Files copied in this run (in check mode, those that would be).
  returned: always
  type: list
  elements: str
fetched_bytes:
  description: Bytes copied in this run.
  returned: always
  type: int
kept_files:
  description: Files already present and matching the manifest.
  returned: always
  type: int
switched:
  description: Whether current moved to this revision.
  returned: always
  type: bool
manifest_digest:
  description: sha256 of the sorted manifest, recorded in the revision's .ironserve-verified marker.
  returned: always
  type: str
needed_bytes:
  description: Bytes the revision still needed when this run started (checked against the free space).
  returned: always
  type: int
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.ironserve_target.weights import S3, StagingError, parse_manifest, read_source_text, stage


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "source": {"type": "str", "required": True},
            "dest": {"type": "path", "default": "/srv/models"},
            "name": {"type": "str", "required": True},
            "revision": {"type": "str", "required": True},
            "manifest": {"type": "str"},
            "s3_endpoint": {"type": "str"},
            "s3_credentials_file": {"type": "path", "default": "/etc/ironserve/s3-credentials.json"},
            "s3_region": {"type": "str", "default": "us-east-1"},
            "parallel": {"type": "int", "default": 4},
        },
        supports_check_mode=True,
    )
    params = module.params
    if params["parallel"] < 1:
        module.fail_json(msg=f"parallel must be 1 or more, not {params['parallel']}")
    for key in ("name", "revision"):
        if "/" in params[key] or params[key] in ("", ".", "..", "current"):
            module.fail_json(msg=f"{key} must be a plain folder name, not {params[key]!r}")
    try:
        s3 = None
        if params["source"].startswith("s3://"):
            if not params["s3_endpoint"]:
                module.fail_json(
                    msg=f"{params['source']} is an S3 source: set s3_endpoint (e.g. http://10.0.2.15:8333)"
                )
            s3 = S3(params["s3_endpoint"], params["s3_credentials_file"], params["s3_region"])
        text = params["manifest"] or read_source_text(params["source"], "SHA256SUMS", s3)
        result = stage(
            params["source"],
            params["dest"],
            params["name"],
            params["revision"],
            parse_manifest(text),
            module.check_mode,
            s3,
            params["parallel"],
        )
    except (StagingError, OSError) as exc:
        module.fail_json(msg=f"staging {params['name']}/{params['revision']} from {params['source']}: {exc}")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
