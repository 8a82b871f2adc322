"""The host network state the Docker engine creates: its bridge and its iptables rules."""

from __future__ import annotations

from bench.errors import ToolMissing
from bench.tools import proc

BRIDGE = "docker0"


def bridge_exists(name: str = BRIDGE) -> bool:
    """Return whether the network interface `name` exists."""
    try:
        return proc.run(["ip", "link", "show", name], timeout=10).ok
    except ToolMissing:
        return False


def delete_bridge(name: str = BRIDGE) -> None:
    """Delete the interface `name` (nothing when it is gone)."""
    proc.run(["ip", "link", "delete", name], timeout=10)


def engine_rules(rules: str) -> list[str]:
    """Return the lines of `iptables-save` output that the engine wrote (pure): its own
    chains (DOCKER, DOCKER-USER, DOCKER-ISOLATION-*) and rules on its bridge."""
    return [
        line
        for line in rules.splitlines()
        if "DOCKER" in line or f" {BRIDGE} " in f"{line} " or f"-o {BRIDGE}" in line
    ]


def without_engine_rules(rules: str) -> str:
    """Return `iptables-save` output with the engine's rules and chains left out (pure)."""
    drop = set(engine_rules(rules))
    return "\n".join(line for line in rules.splitlines() if line not in drop) + "\n"


def saved_rules() -> str:
    """Return `iptables-save`'s output, or '' where iptables is not installed."""
    try:
        done = proc.run(["iptables-save"], timeout=30)
    except ToolMissing:
        return ""
    return done.stdout if done.ok else ""


def forward_policy(rules: str) -> str:
    """Return the filter table's FORWARD policy in `iptables-save` output, or ''."""
    table = ""
    for line in rules.splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif table == "filter" and line.startswith(":FORWARD "):
            return line.split()[1]
    return ""


def with_forward_policy(rules: str, policy: str) -> str:
    """Return `rules` with the filter table's FORWARD policy set to `policy` (pure)."""
    table, out = "", []
    for line in rules.splitlines():
        if line.startswith("*"):
            table = line[1:]
        if table == "filter" and line.startswith(":FORWARD "):
            line = f":FORWARD {policy} " + line.split(" ", 2)[2]
        out.append(line)
    return "\n".join(out) + "\n"


def remove_engine_rules(forward_policy_before: str = "") -> None:
    """Restore the rule set without the engine's rules, and the FORWARD policy the host
    had before the engine set it. Raises CommandFailed."""
    rules = saved_rules()
    if not rules:
        return
    restored = without_engine_rules(rules)
    if forward_policy_before:
        restored = with_forward_policy(restored, forward_policy_before)
    proc.run(["iptables-restore"], input_text=restored, timeout=30, check=True)


IP_FORWARD = "/proc/sys/net/ipv4/ip_forward"


def ip_forward() -> str:
    """Return the kernel's IPv4 forwarding switch ('0' or '1'), or '' if unreadable."""
    try:
        with open(IP_FORWARD) as fh:
            return fh.read().strip()
    except OSError:
        return ""


def set_ip_forward(value: str) -> None:
    """Set the kernel's IPv4 forwarding switch."""
    with open(IP_FORWARD, "w") as fh:
        fh.write(value)
