"""A node's ``cpu`` from its own cgroup: the sample's ``FILE:LINE`` lines parsed (cgroup v2, v1, none of the node's),
the percent of the cpus its quota allows, and which hierarchies a sandboxed node is shown of its cgroups."""

from __future__ import annotations

import subprocess

from cloudherd.engine.metrics import PROC, CgroupCpu, cgroup_cpu, cgroup_cpu_percent, parse_proc
from cloudherd.providers.local.node_setup import cgroup_hierarchies

V2 = ("/proc/uptime:1000.50 1900.00\n/sys/devices/system/cpu/online:0-3\n/sys/fs/cgroup/cpu.max:100000 100000\n"
      "/sys/fs/cgroup/cpu.stat:usage_usec 2500000\n/sys/fs/cgroup/cpu.stat:user_usec 2000000\n"
      "/sys/fs/cgroup/cpu.stat:system_usec 500000\n")
V1 = ("/proc/uptime:20.00 30.00\n/sys/devices/system/cpu/online:0-1\n/sys/fs/cgroup/cpu/cpu.cfs_quota_us:50000\n"
      "/sys/fs/cgroup/cpu/cpu.cfs_period_us:100000\n/sys/fs/cgroup/cpuacct/cpuacct.usage:3000000000\n")


def test_cgroup_v2_usage_and_quota() -> None:
    assert cgroup_cpu(V2) == CgroupCpu(used=2.5, clock=1000.5, cpus=1.0)
    # two cpus' quota on a machine of four; a half
    two = V2.replace("cpu.max:100000 100000", "cpu.max:150000 75000")
    assert cgroup_cpu(two) == CgroupCpu(2.5, 1000.5, 2.0)


def test_cgroup_v1_cpuacct_and_cfs_quota() -> None:
    assert cgroup_cpu(V1) == CgroupCpu(used=3.0, clock=20.0, cpus=0.5)


def test_no_limit_of_the_node_s_own_is_the_machine_s_cpu() -> None:
    assert cgroup_cpu(V2.replace("cpu.max:100000 100000", "cpu.max:max 100000")) is None  # v2, no quota
    assert cgroup_cpu(V1.replace("cfs_quota_us:50000", "cfs_quota_us:-1")) is None  # v1, no quota
    assert cgroup_cpu(V2.replace("usage_usec", "nice_usec")) is None  # no usage
    assert cgroup_cpu("cpu  1 2 3 4 5 6 7 8\n0.00 0.01 0.05 1/100 42\n") is None  # a VM: /proc/stat only


def test_the_quota_counts_at_most_the_cpus_online() -> None:
    eight = V2.replace("cpu.max:100000 100000", "cpu.max:800000 100000")
    assert cgroup_cpu(eight) == CgroupCpu(2.5, 1000.5, 4.0)  # 0-3: four
    assert cgroup_cpu(eight.replace("online:0-3", "online:0-1,4,6-7")) == CgroupCpu(2.5, 1000.5, 5.0)
    assert cgroup_cpu(eight.replace("online:0-3", "online:junk")) == CgroupCpu(2.5, 1000.5, 8.0)


def test_the_clock_of_the_sample_when_the_node_gives_none() -> None:
    without = "".join(line + "\n" for line in V2.splitlines() if not line.startswith("/proc/uptime"))
    assert cgroup_cpu(without) is None
    assert cgroup_cpu(without, clock=77.0) == CgroupCpu(2.5, 77.0, 1.0)


def test_percent_of_the_quota_between_two_samples() -> None:
    before = CgroupCpu(used=10.0, clock=100.0, cpus=1.0)
    assert cgroup_cpu_percent(None, before) is None  # the first sample of a node
    assert cgroup_cpu_percent(before, CgroupCpu(11.5, 102.0, 1.0)) == 75.0  # 1.5 s of 2 s of one cpu
    assert cgroup_cpu_percent(before, CgroupCpu(11.5, 102.0, 2.0)) == 37.5  # of two
    assert cgroup_cpu_percent(before, CgroupCpu(10.02, 110.0, 0.25)) == 0.8  # an idle quarter cpu
    assert cgroup_cpu_percent(before, CgroupCpu(12.1, 102.0, 1.0)) == 100.0  # a period straddling the samples
    assert cgroup_cpu_percent(before, CgroupCpu(10.5, 100.0, 1.0)) is None  # no time between
    assert cgroup_cpu_percent(before, CgroupCpu(0.5, 105.0, 1.0)) is None  # a new cgroup (node started again)


def test_the_sample_command_runs_here_and_parses_as_before() -> None:
    """This machine's own answer to :data:`PROC`: one command, its /proc lines read as before and, with no cpu limit
    of this process's own at /sys/fs/cgroup (the host's top), no cgroup cpu — or one with a quota, where there is."""
    done = subprocess.run(["sh", "-c", PROC], capture_output=True, text=True, timeout=10)
    assert done.returncode == 0, done.stderr
    counters, memory, load1 = parse_proc(done.stdout)
    assert counters is not None and memory is not None and load1 is not None
    own = cgroup_cpu(done.stdout)
    assert own is None or own.cpus > 0


MOUNTINFO_V1 = """\
25 1 0:23 / / rw,relatime - overlay overlay rw
30 25 0:26 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
32 30 0:28 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
33 30 0:29 / /sys/fs/cgroup/systemd rw,nosuid - cgroup cgroup rw,xattr,release_agent=/x,name=systemd
34 30 0:30 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw,nsdelegate
"""
KNOWN = {"cpu", "cpuacct", "memory", "pids", "cpuset"}


def test_a_node_is_shown_the_hierarchies_of_its_cgroups() -> None:
    folders = ["/sys/fs/cgroup/cpu,cpuacct/cloudherd/n1", "/sys/fs/cgroup/memory/user/cloudherd/n1"]
    assert cgroup_hierarchies(folders, MOUNTINFO_V1, KNOWN) == [("cgroup", "cpu,cpuacct"), ("cgroup", "memory")]
    assert cgroup_hierarchies(folders[:1] * 2, MOUNTINFO_V1, KNOWN) == [("cgroup", "cpu,cpuacct")]  # once each
    # the unified hierarchy of a hybrid host only where the node has a cgroup in it; none outside a hierarchy
    assert cgroup_hierarchies(["/sys/fs/cgroup/unified/cloudherd/n1"], MOUNTINFO_V1, KNOWN) == [("cgroup2", "")]
    assert cgroup_hierarchies(["/srv/elsewhere"], MOUNTINFO_V1, KNOWN) == []
    # options not a controller's (release_agent, xattr, a name) are never passed on
    assert cgroup_hierarchies(["/sys/fs/cgroup/systemd/x"], MOUNTINFO_V1, KNOWN) == []
    v2 = "40 25 0:31 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n"
    assert cgroup_hierarchies(["/sys/fs/cgroup/cloudherd/n1"], v2, KNOWN) == [("cgroup2", "")]
    spaced = "41 25 0:32 / /mnt/my\\040cgroups rw - cgroup cgroup rw,pids\n"
    assert cgroup_hierarchies(["/mnt/my cgroups/n1"], spaced, KNOWN) == [("cgroup", "pids")]
