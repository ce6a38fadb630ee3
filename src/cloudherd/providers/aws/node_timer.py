"""An EC2 instance that ends itself at its deadline, with no manager left to end it (Capability.NODE_TIMER).

Why on the machine: a time to live or an autodown is the manager's to enforce, and the manager runs on somebody's
laptop; a laptop that went to sleep must leak nothing.  So each instance of an infrastructure with such a rule is
made with ``InstanceInitiatedShutdownBehavior`` (``terminate``, or ``stop`` for an autostop that stops) and a boot
script, run by cloud-init at every boot, that reads the instance's own tag ``cloudherd:deadline`` (Unix seconds)
from the instance metadata once a minute and shuts the machine down once it is past.  The tag, not the boot
script, holds the time: the manager moves it (a longer ``--ttl``, a fleet found in use again) with one CreateTags
call, no SSH.  Reading tags from the metadata needs ``InstanceMetadataTags: enabled``, which EC2 refuses when a
tag key holds other characters than letters, digits and ``+ - = . , _ : @``: such a create gets no timer, and says
so (the manager alone then enforces the rule).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from cloudherd.providers.base import TAG_DEADLINE, CreateRequest

SHUTDOWN_BEHAVIOURS = ("terminate", "stop")
METADATA_TAG_KEY = re.compile(r"^[A-Za-z0-9+\-=.,_:@]{1,128}$")  # what EC2 takes with metadata tags enabled
WATCHER = "/usr/local/sbin/cloudherd-deadline"

# the boot script: installs the watcher, runs it at every boot (cloud-init's per-boot folder) and now.  The watcher
# asks IMDSv2 for the tag each minute; no tag or no number: nothing to do.  ``--check`` answers once (due / not due
# / no deadline) and never shuts anything down: what the tests run.
BOOT_SCRIPT = r"""#!/bin/sh
# cloudherd: this machine ends itself at its instance tag cloudherd:deadline (Unix seconds), with no manager left
set -eu
cat > __WATCHER__ <<'WATCHER'
#!/bin/sh
imds="${CLOUDHERD_IMDS:-http://169.254.169.254}"
deadline() {
    token=$(curl -fsS -m 5 -X PUT -H "X-aws-ec2-metadata-token-ttl-seconds: 300" "$imds/latest/api/token") || return 0
    curl -fsS -m 5 -H "X-aws-ec2-metadata-token: $token" "$imds/latest/meta-data/tags/instance/__TAG__" || true
}
due() {
    case "$1" in ''|*[!0-9]*) return 1 ;; esac
    [ "$(date +%s)" -ge "$1" ]
}
if [ "${1:-}" = "--check" ]; then
    when=$(deadline)
    case "$when" in
        ''|*[!0-9]*) echo "no deadline" ;;
        *) if due "$when"; then echo "due"; else echo "not due"; fi ;;
    esac
    exit 0
fi
while :; do
    if due "$(deadline)"; then
        logger -t cloudherd "deadline reached: shutting down" || true
        shutdown -h now
        exit 0
    fi
    sleep 60
done
WATCHER
chmod 755 __WATCHER__
mkdir -p /var/lib/cloud/scripts/per-boot
printf '#!/bin/sh\nnohup __WATCHER__ >/dev/null 2>&1 &\n' > /var/lib/cloud/scripts/per-boot/cloudherd-deadline
chmod 755 /var/lib/cloud/scripts/per-boot/cloudherd-deadline
nohup __WATCHER__ >/dev/null 2>&1 &
""".replace("__WATCHER__", WATCHER).replace("__TAG__", TAG_DEADLINE)


def timer_params(request: CreateRequest, tags: Mapping[str, str]) -> tuple[dict[str, Any], str | None]:
    """RunInstances' parameters for the request's deadline, and the notice when it cannot have one ({}: no
    deadline asked)."""
    if request.deadline is None:
        return {}, None
    odd = sorted(k for k in tags if not METADATA_TAG_KEY.match(k))
    if odd:
        return {}, (f"no timer on the machines: EC2 reads tags from instance metadata only when every tag key is "
                    f"made of letters, digits and + - = . , _ : @ (not: {', '.join(odd)}); the manager alone ends "
                    f"them at their deadline")
    behaviour = request.on_deadline if request.on_deadline in SHUTDOWN_BEHAVIOURS else "terminate"
    return {"InstanceInitiatedShutdownBehavior": behaviour,
            # the tags in the metadata, nothing else of it changed (IMDSv1 stays as the account has it)
            "MetadataOptions": {"HttpEndpoint": "enabled", "InstanceMetadataTags": "enabled"}}, None
