"""Colours of states, shared by the CLI's tables and its live progress."""

STATE_STYLE = {
    "creating": "cyan", "booting": "cyan", "deploying": "yellow", "ready": "green", "failed": "red",
    "terminating": "magenta", "terminated": "dim", "dead": "red", "stopped": "yellow", "unhealthy": "yellow",
    "waiting": "cyan", "draining": "magenta",
}
INFRA_STYLE = {"ready": "green", "failed": "red", "destroyed": "dim", "creating": "cyan", "updating": "cyan",
               "destroying": "magenta"}
