"""Storage decisions from the probe's facts: which drives an array takes, what safe mode refuses, what an
existing array is. Used by the storage roles through filters; every problem names the variable and the fix."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

from ironserve_target.facts import disk_index, is_system_disk


def parse_md_export(text: str) -> dict[str, Any]:
    """``mdadm --detail --export /dev/md/NAME`` -> level, member count, UUID, name and member devices."""
    values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    if "MD_LEVEL" not in values:
        return {}
    members = sorted(
        value.removeprefix("/dev/")
        for key, value in values.items()
        if key.startswith("MD_DEVICE_") and key.endswith("_DEV")
    )
    return {
        "level": values["MD_LEVEL"],
        "raid_devices": int(values.get("MD_DEVICES", 0)),
        "uuid": values.get("MD_UUID"),
        "name": values.get("MD_NAME"),
        "members": members,
    }


# Fewest members per RAID level; level 0 means no RAID (LVM straight on the disks).
MIN_MEMBERS = {0: 1, 1: 2, 6: 4, 10: 4}


def level_name(level: int) -> str:
    """How the system names the layout: mdadm's ``raid10``, or ``lvm`` for volumes straight on the disks."""
    return "lvm" if level == 0 else f"raid{level}"


def parse_pvs(text: str, volume_group: str) -> dict[str, Any]:
    """``pvs --noheadings -o pv_name,vg_name`` -> the disks of ``volume_group`` as an existing ``lvm`` layout."""
    members = sorted(
        fields[0].removeprefix("/dev/")
        for fields in (line.split() for line in text.splitlines())
        if len(fields) == 2 and fields[1] == volume_group
    )
    return {"level": "lvm", "members": members} if members else {}


def _is_candidate(disk: dict, kind: str) -> bool:
    if disk["in_use"]:
        return False
    if kind == "rotational":
        return disk.get("rotational", False) and disk["kind"] in ("sas", "sata", "other")
    return disk["kind"] == kind


def plan_array(
    hw: dict,
    declared: list[str],
    variable: str,
    level: int,
    existing: dict,
    safe_mode: bool,
    allow_destroy: list[str],
    kind: str = "nvme",
) -> dict[str, Any]:
    """The drives an array takes, those whose content must be wiped first, and every problem at once.

    ``kind`` picks free drives when none are declared: a probe disk kind (``nvme``) or ``rotational``
    (spinning SAS/SATA disks).
    """
    disks = hw.get("storage", {}).get("disks", [])
    index = disk_index(disks)
    problems: list[str] = []
    chosen: list[dict] = []
    existing_members = set(existing.get("members", []))
    if declared:
        for name in declared:
            disk = index.get(name)
            if disk is None:
                problems.append(f"{variable} names {name}, which this host does not have")
            elif disk in chosen:
                problems.append(f"{variable} names /dev/{disk['name']} twice (as {name})")
            else:
                chosen.append(disk)
    elif existing_members:
        chosen = [d for d in disks if d["name"] in existing_members]
    else:
        chosen = [d for d in disks if _is_candidate(d, kind)]
    wanted = level_name(level)
    if level not in MIN_MEMBERS:
        problems.append(f"RAID level {level} is not offered; use one of {', '.join(map(str, MIN_MEMBERS))}")
    elif len(chosen) < MIN_MEMBERS[level]:
        problems.append(
            f"not enough disks selected to create {wanted} array, at least {MIN_MEMBERS[level]} disks needed; "
            f"{variable} selects {len(chosen)}: {', '.join('/dev/' + d['name'] for d in chosen) or 'none'}"
        )
    elif level == 10 and len(chosen) % 2:
        problems.append(f"raid10 needs an even number of drives; {variable} selects {len(chosen)}")
    allowed = {index[name]["name"] for name in allow_destroy if name in index}
    wipe = []
    for disk in chosen:
        reasons = disk.get("in_use_reasons", [])
        if is_system_disk(disk):
            problems.append(f"{variable} selects /dev/{disk['name']}, the system disk; it is never used")
        elif disk["name"] in existing_members or not disk["in_use"]:
            continue
        elif disk["name"] in allowed:
            wipe.append(f"/dev/{disk['name']}")
        elif safe_mode:
            problems.append(
                f"refusing /dev/{disk['name']} ({disk.get('by_id') or disk.get('serial')}): {'; '.join(reasons)}. "
                f"Safe mode keeps data: list it in {variable.replace('_devices', '_allow_destroy')} to destroy it"
            )
    if existing:
        if existing.get("level") != wanted:
            problems.append(
                f"the existing array is {existing.get('level')}, not {wanted}; changing the RAID level "
                "of an existing array is refused (move the data, stop the array, then re-run)"
            )
        if declared and {d["name"] for d in chosen} != existing_members:
            problems.append(
                f"the existing array has members {', '.join(sorted(existing_members))}, but {variable} "
                f"selects {', '.join(sorted(d['name'] for d in chosen))}; it is adopted only as it is"
            )
    return {
        "members": [d.get("by_id") or f"/dev/{d['name']}" for d in chosen],
        "names": [d["name"] for d in chosen],
        "wipe": wipe,
        "problems": problems,
    }


# Folders of the system a tier's filesystem would hide if mounted there.
SYSTEM_FOLDERS = ("/boot", "/usr", "/var", "/etc")


def mount_path_problems(mounts: dict[str, str]) -> list[str]:
    """Tier mount paths (variable -> path) must be folders of their own, not a system folder, and apart: one inside
    another hides it or its data. The tier roles check their own, preflight every tier's at once."""
    problems = [
        f"{variable} is empty; set the folder to mount the tier at, like /srv/models"
        for variable, path in mounts.items()
        if not path
    ]
    paths = {variable: PurePosixPath(path) for variable, path in mounts.items() if path}
    for variable, path in paths.items():
        if not path.is_absolute() or len(path.parts) < 2:
            problems.append(f"{variable} is '{path}'; it must be an absolute folder of its own, like /srv/models")
        elif str(path) in SYSTEM_FOLDERS:
            problems.append(f"{variable} is '{path}', a system folder; mount the tier at its own, like /srv/models")
    names = sorted(paths)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            a, b = paths[first], paths[second]
            if a == b:
                problems.append(f"{first} and {second} are both {a}; each tier needs its own mount path")
            elif a.is_relative_to(b) or b.is_relative_to(a):
                inner, outer = (first, second) if a.is_relative_to(b) else (second, first)
                problems.append(
                    f"{inner} ({paths[inner]}) is inside {outer} ({paths[outer]}); mount the tiers side by side, "
                    "for example /srv/models and /srv/warm"
                )
    return problems
