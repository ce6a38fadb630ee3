"""The states a node and an infrastructure go through: one enum each, shared by every package.

Why one place: the engine, the state store, the API and the CLI all decide by state ("is it live?",
"does it count towards the group's size?").  When each kept its own tuple of strings they drifted;
here each question has one answer.  The enums are ``StrEnum`` so the database keeps plain strings
and a value read back compares equal to its member.
"""

from __future__ import annotations

from enum import StrEnum


class NodeState(StrEnum):
    """A node's life: a row is ``pending`` until its machine exists, then boots, deploys and is ready."""

    PENDING = "pending"  # a row with no machine yet (the journal's create intent is open or next)
    CREATING = "creating"  # the create call is in flight (shown in progress; the row stays pending)
    BOOTING = "booting"  # the machine exists; waiting for SSH
    DEPLOYING = "deploying"  # scripts are running
    WAITING = "waiting"  # its scripts succeeded; a launch hook holds it out of service (AWS's Pending:Wait)
    READY = "ready"  # every script succeeded (and, under a manager, its health checks pass)
    UNHEALTHY = "unhealthy"  # a health check failed; failed once it keeps failing (unhealthy_after)
    FAILED = "failed"  # a script failed or the node could not be reached; the machine still exists
    DRAINING = "draining"  # chosen to end; a terminate hook holds its machine (AWS's Terminating:Wait)
    STOPPED = "stopped"  # the provider reports it stopped
    DEAD = "dead"  # the provider no longer has it running
    TERMINATING = "terminating"
    TERMINATED = "terminated"


# Machines that exist and may answer SSH: fleet commands work on these.
LIVE_NODE_STATES = frozenset({NodeState.BOOTING, NodeState.DEPLOYING, NodeState.WAITING, NodeState.READY,
                              NodeState.UNHEALTHY, NodeState.FAILED, NodeState.DRAINING})
# Nodes that count towards a group's size (a dead or terminated one is replaced, a stopped one is not, a draining
# one is on its way out).
COUNTED_NODE_STATES = (LIVE_NODE_STATES - {NodeState.DRAINING}) | {NodeState.PENDING, NodeState.STOPPED}
# Nodes whose teardown and artifacts can be run before they are terminated.
REACHABLE_NODE_STATES = frozenset({NodeState.WAITING, NodeState.READY, NodeState.UNHEALTHY, NodeState.FAILED,
                                   NodeState.DEPLOYING, NodeState.DRAINING})
# Nodes whose machine is gone or going: their addresses must not be handed to templates.
GONE_NODE_STATES = frozenset({NodeState.DEAD, NodeState.TERMINATING, NodeState.TERMINATED})


class InfraState(StrEnum):
    """An infrastructure's life, from its first ``up`` to ``down``."""

    CREATING = "creating"
    UPDATING = "updating"
    READY = "ready"
    FAILED = "failed"
    DESTROYING = "destroying"
    DESTROYED = "destroyed"


ACTIVE_INFRA_STATES = frozenset(set(InfraState) - {InfraState.DESTROYED})


class RevisionState(StrEnum):
    """A release's life: applied (or paused by a rollout's canary or health gate, then resumed), failed, or
    given up (aborted) when a rollout went back to the release before."""

    APPLYING = "applying"
    APPLIED = "applied"
    PAUSED = "paused"
    FAILED = "failed"
    ABORTED = "aborted"


class Process(StrEnum):
    """What the manager does for a group on its own, each of which can be suspended and resumed (AWS Auto
    Scaling's processes, in cloudherd's words; :data:`AWS_PROCESS_NAMES` maps them).  Suspended, a process is
    not run until it is resumed; a user's own command (``up``, ``scale``, ``down``) still works."""

    LAUNCH = "launch"  # make nodes (to grow, or to replace one)
    TERMINATE = "terminate"  # end live nodes (to shrink, or to replace one); a machine already gone is still forgotten
    HEALTH_CHECK = "health-check"  # check nodes (ready ⇄ unhealthy → failed)
    REPLACE_UNHEALTHY = "replace-unhealthy"  # replace failed nodes
    SCHEDULED_ACTIONS = "scheduled-actions"  # fire the group's schedules
    POLICIES = "policies"  # sample metrics and follow the scaling policies (AWS's alarm notifications)
    REBALANCE = "rebalance"  # move nodes back to the places their placement asks for
    ROLLOUT = "rollout"  # roll a release submitted through the server onto the nodes (AWS's instance refresh)
    ADD_TO_LOAD_BALANCER = "add-to-load-balancer"  # AWS's; cloudherd has no balancer: kept, shown, does nothing


AWS_PROCESS_NAMES = {
    "Launch": Process.LAUNCH, "Terminate": Process.TERMINATE, "HealthCheck": Process.HEALTH_CHECK,
    "ReplaceUnhealthy": Process.REPLACE_UNHEALTHY, "ScheduledActions": Process.SCHEDULED_ACTIONS,
    "AlarmNotification": Process.POLICIES, "AZRebalance": Process.REBALANCE, "InstanceRefresh": Process.ROLLOUT,
    "AddToLoadBalancer": Process.ADD_TO_LOAD_BALANCER,
}
