"""Jinja filters that put ironserve's Python rules in reach of the roles (controller side)."""

from __future__ import annotations

from ironserve import preflight, report, storage


class FilterModule:
    """ironserve_preflight_problems, ironserve_hw_markdown, ironserve_md_detail, ironserve_plan_array."""

    def filters(self):
        return {
            "ironserve_preflight_problems": preflight.problems,
            "ironserve_hw_markdown": lambda hw, hostname: report.markdown(hostname, hw),
            "ironserve_md_detail": storage.parse_md_export,
            "ironserve_plan_array": storage.plan_array,
        }
