"""Jinja filters that put ironserve's Python rules in reach of the roles (controller side)."""

from __future__ import annotations

from ironserve import (
    driver_policy,
    engines,
    frontend,
    monitoring,
    network,
    planner,
    preflight,
    report,
    scaling,
    services,
    storage,
)


class FilterModule:
    """Filters by concern; each is a function of the ironserve package, unit-tested there.

    GPU stack: ironserve_driver_plan, ironserve_cuda_toolkit_for, ironserve_driver_version_changes,
    ironserve_smi_mismatches, ironserve_gpu_stacks. Inference: ironserve_model_plan, ironserve_engine_deployment.
    Storage: ironserve_md_detail, ironserve_plan_array, ironserve_pvs.
    ironserve_address_of_mac, ironserve_subnet_of_address. Preflight and reports: ironserve_preflight_problems,
    ironserve_hw_markdown. Networks: ironserve_network_plan_problems, ironserve_select_nics,
    ironserve_missing_nics_problem, ironserve_data_address, ironserve_networkd,
    ironserve_netplan, ironserve_network_files, ironserve_roce_v2_gid, ironserve_host_pairs,
    ironserve_bandwidth_floor, ironserve_min_gbits, ironserve_check_report. Front door: ironserve_frontend_problems,
    ironserve_frontend_backends, ironserve_frontend_interface, ironserve_frontend_own_address,
    ironserve_frontend_priorities, ironserve_frontend_tls_problems,
    ironserve_frontend_router_id_problem, ironserve_frontend_firewall. Monitoring: ironserve_monitoring_problems,
    ironserve_monitoring_listen_address, ironserve_monitoring_addresses, ironserve_monitoring_host_targets,
    ironserve_monitoring_prometheus_config, ironserve_monitoring_retention_size, ironserve_monitoring_file,
    ironserve_host_port (host:port, an IPv6 address in brackets), ironserve_monitoring_dcgm_exporter_argv.
    Scaling: ironserve_engine_slot_count, ironserve_engine_slots, ironserve_scale_serving, ironserve_scale_step,
    ironserve_scale_textfile. Services: ironserve_ran_before (a unit active before its "Run" task).
    """

    def filters(self):
        return {
            "ironserve_preflight_problems": preflight.problems,
            "ironserve_preflight_declaration": preflight.declaration,
            "ironserve_mount_path_problems": storage.mount_path_problems,
            "ironserve_hw_markdown": lambda hw, hostname: report.markdown(hostname, hw),
            "ironserve_md_detail": storage.parse_md_export,
            "ironserve_plan_array": storage.plan_array,
            "ironserve_pvs": storage.parse_pvs,
            "ironserve_driver_plan": driver_policy.driver_plan,
            "ironserve_cuda_toolkit_for": driver_policy.cuda_toolkit_for,
            "ironserve_driver_version_changes": driver_policy.driver_version_changes,
            "ironserve_smi_mismatches": driver_policy.smi_mismatches,
            "ironserve_gpu_stacks": driver_policy.gpu_stacks,
            "ironserve_model_plan": planner.plan_for_host,
            "ironserve_engine_deployment": engines.deployment,
            "ironserve_address_of_mac": network.address_of_mac,
            "ironserve_subnet_of_address": network.subnet_of_address,
            "ironserve_network_plan_problems": network.play_problems,
            "ironserve_select_nics": network.select_nics,
            "ironserve_missing_nics_problem": network.missing_nics_problem,
            "ironserve_data_address": network.data_address,
            "ironserve_networkd": network.render_networkd,
            "ironserve_netplan": network.render_netplan,
            "ironserve_network_files": network.render_files,
            "ironserve_roce_v2_gid": network.roce_v2_gid,
            "ironserve_host_pairs": network.host_pairs,
            "ironserve_bandwidth_floor": network.bandwidth_floor,
            "ironserve_min_gbits": network.min_gbits_setting,
            "ironserve_check_report": network.check_report,
            "ironserve_frontend_problems": frontend.problems,
            "ironserve_frontend_backends": frontend.backends,
            "ironserve_frontend_interface": frontend.interface_in_subnet,
            "ironserve_frontend_own_address": frontend.interface_address,
            "ironserve_frontend_priorities": frontend.priorities,
            "ironserve_frontend_tls_problems": frontend.tls_problems,
            "ironserve_frontend_router_id_problem": frontend.router_id_problem,
            "ironserve_frontend_firewall": frontend.firewall,
            "ironserve_monitoring_problems": monitoring.problems,
            "ironserve_monitoring_listen_address": monitoring.listen_address,
            "ironserve_monitoring_addresses": monitoring.addresses,
            "ironserve_monitoring_host_targets": monitoring.host_targets,
            "ironserve_monitoring_prometheus_config": monitoring.prometheus_config,
            "ironserve_monitoring_retention_size": monitoring.retention_size,
            "ironserve_monitoring_file": monitoring.generated_file,
            "ironserve_host_port": engines.host_port,
            "ironserve_monitoring_dcgm_exporter_argv": monitoring.dcgm_exporter_argv,
            "ironserve_engine_slot_count": scaling.slot_count,
            "ironserve_engine_slots": scaling.slots,
            "ironserve_scale_serving": scaling.serving,
            "ironserve_scale_step": scaling.step,
            "ironserve_scale_textfile": scaling.textfile,
            "ironserve_ran_before": services.ran_before,
        }
