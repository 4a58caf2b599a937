"""The monitoring role's RDMA port state writer (roles/monitoring/files/ironserve-rdma-state.sh) over a made-up sysfs:
every port's state and physical state as the kernel numbers them, none without ports, the file replaced whole."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

PROGRAM = Path(__file__).resolve().parents[1] / "roles" / "monitoring" / "files" / "ironserve-rdma-state.sh"


def _port(sysfs: Path, device: str, port: int, state: str, physical: str) -> None:
    folder = sysfs / "class" / "infiniband" / device / "ports" / str(port)
    folder.mkdir(parents=True)
    (folder / "state").write_text(state + "\n")
    (folder / "phys_state").write_text(physical + "\n")


def _samples(path: Path) -> dict[str, float]:
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in lines}


def test_every_port_with_its_state_and_physical_state(tmp_path):
    sysfs = tmp_path / "sys"
    _port(sysfs, "rxe0", 1, "4: ACTIVE", "5: LinkUp")
    _port(sysfs, "mlx5_1", 1, "1: DOWN", "3: Disabled")  # no counters/ folder anywhere: the state is all it needs
    textfile = tmp_path / "ironserve_rdma.prom"
    subprocess.run(["sh", str(PROGRAM), str(textfile), str(sysfs)], check=True)
    assert _samples(textfile) == {
        'ironserve_rdma_port_state_id{device="mlx5_1",port="1"}': 1,
        'ironserve_rdma_port_physical_state_id{device="mlx5_1",port="1"}': 3,
        'ironserve_rdma_port_state_id{device="rxe0",port="1"}': 4,
        'ironserve_rdma_port_physical_state_id{device="rxe0",port="1"}': 5,
    }
    assert stat.S_IMODE(textfile.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("ironserve_rdma.prom.")] == []


def test_a_host_without_rdma_gets_a_file_without_samples(tmp_path):
    textfile = tmp_path / "ironserve_rdma.prom"
    subprocess.run(["sh", str(PROGRAM), str(textfile), str(tmp_path / "sys")], check=True)
    assert _samples(textfile) == {}
    assert "# TYPE ironserve_rdma_port_state_id gauge" in textfile.read_text()
