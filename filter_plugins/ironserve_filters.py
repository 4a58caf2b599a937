"""Jinja filters that put ironserve's Python rules in reach of the roles (controller side)."""

from __future__ import annotations

from ironserve import preflight, report


class FilterModule:
    """ironserve_preflight_problems, ironserve_hw_markdown."""

    def filters(self):
        return {
            "ironserve_preflight_problems": preflight.problems,
            "ironserve_hw_markdown": lambda hw, hostname: report.markdown(hostname, hw),
        }
