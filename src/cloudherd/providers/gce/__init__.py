"""The ``gce`` provider: Compute Engine VMs through google-cloud-compute (imported lazily:
``pip install 'cloudherd[gce]'``).

Settings: ``project`` (else ``GOOGLE_PROJECT``, ``GOOGLE_CLOUD_PROJECT``, ``CLOUDSDK_CORE_PROJECT``, else the
``project_id`` of the credentials file), ``zone`` (else ``GOOGLE_DATACENTER``, ``CLOUDSDK_COMPUTE_ZONE``),
``region`` (default: the zone's), ``credentials`` (a service-account or other Google credentials JSON file,
else ``GOOGLE_APPLICATION_CREDENTIALS``, else Application Default Credentials; a ``google.auth`` credentials
object is taken as is), ``anonymous`` (true: send no credentials, for emulators and tests), ``endpoint`` (API
endpoint override, ``http://`` allowed), ``image`` (default ``debian-12``), ``size`` (default ``e2-small``),
``network`` / ``subnetwork``, ``external_ip`` (default true), ``disk_size_gb``, ``disk_type``,
``firewall`` (default true, see below), ``source_ranges`` (default ``["0.0.0.0/0"]``), ``operation_timeout``
(seconds, default 600), ``request_timeout`` (seconds, default 60), ``poll_interval`` (seconds, default 2).
Credentials never appear in messages or logs.

Decisions:

* ``create`` makes all instances in ONE ``instances.bulkInsert`` call (``count`` = ``minCount``, so GCE makes
  all or none), named by ``request.names`` (``perInstanceProperties``) or by a name pattern.  The bulkInsert
  ``requestId`` is a UUID5 of ``request.token`` and the names: a retried create within GCE's de-duplication
  window gets the first call's operation back instead of new machines, while a create with the same token but
  other names (a group grown later) is a new request.  The zone operation is waited for with
  ``zoneOperations.wait`` calls, each bounded, under one deadline (``operation_timeout``): past it,
  :class:`OperationTimeoutError`.  The instances are then listed by their tags (re-listed until they have an
  address, within the same deadline).
* Tags are GCE *labels*, which allow only ``[a-z0-9_-]`` and 63 characters.  Keys and values are encoded
  reversibly: ``[a-z0-9-]`` stay as they are, ``:`` becomes ``_`` (so ``cloudherd:infra`` is the label
  ``cloudherd_infra``), anything else an escape starting with ``__``; ``list`` decodes them back.  A tag too
  long to fit is an :class:`InvalidRequestError`.  Foreign labels are decoded the same way (a ``_`` reads
  as ``:``).
* Login: the key goes into the instance metadata ``ssh-keys`` as ``user:key``; the guest agent makes the user
  (with sudo).  Projects that enforce OS Login ignore that key.
* Ports (:meth:`open_ports` / :meth:`close_ports`): each (infra, group) gets a firewall rule
  ``cloudherd-<infra>-<group>`` in the network (TCP 22 and the ports, from ``source_ranges``; its description
  holds the group's tags, so ``gc`` finds a rule a crash left behind), and the group's instances get its name
  as their target tag.  ``create`` opens it for ``request.ports``, newly listed ports are added; ``terminate``
  of the last instances carrying it deletes it, so no rule outlives its group.
* One attempt per call: 5xx answers and dropped connections are :class:`TransientError`, rate limits
  :class:`ThrottledError`, both retried by the rate budget; the SDK's own retries are off (``retry=None``).
* Spot (``request.market == "spot"``, :attr:`~cloudherd.providers.base.Capability.SPOT`): Spot VMs, scheduling
  ``provisioningModel: SPOT`` with ``instanceTerminationAction: DELETE`` (a VM taken back is deleted, not left
  stopped and billed for its disk), ``automaticRestart: false``, ``onHostMaintenance: TERMINATE``; the bulkInsert
  ``requestId`` of a Spot create is its own, since a Spot create refused for capacity
  (``ZONE_RESOURCE_POOL_EXHAUSTED``…: a :class:`CapacityError`) is asked again on-demand with the same token
  (GCE would answer that with the refused operation again).  GCE Spot has no maximum price (no bid;
  ``maxRunDuration`` limits time, not cost): ``max_price`` with spot is an :class:`InvalidRequestError`.
  ``extra["market"]`` of a listed instance is ``spot`` for a Spot VM (or a legacy preemptible one), else
  ``on-demand``.  :meth:`ended` tells a VM GCE took back by the zone's
  ``compute.instances.preempted`` operations (``zoneOperations.list`` filtered on ``operationType``, as GCE
  documents telling a preempted VM; matched on the instance name in ``targetLink``; GCE keeps operations for a
  limited time, and an older VM of the same name's preemption would be told too).  A Spot VM that is stopping or
  stopped after such an operation (GCE deleting it) is not listed: it is gone, and ``ended`` says why.
* Instance ids are instance names (in the configured zone).  ``terminate`` ignores names already gone;
  ``stop``/``start`` of a missing name is a :class:`NotFoundError`.  States: PROVISIONING, STAGING, REPAIRING
  → pending; RUNNING → running; STOPPING, SUSPENDING, SUSPENDED, TERMINATED (GCE's word for stopped) → stopped.
"""

from cloudherd.providers.gce.driver import GceProvider
from cloudherd.providers.gce.errors import OperationTimeoutError
from cloudherd.providers.gce.labels import (
    decode_label,
    decode_labels,
    encode_label,
    encode_labels,
    instance_name,
    label_key,
    request_id,
    tag_key,
)
from cloudherd.providers.gce.network import rule_name

__all__ = ["GceProvider", "OperationTimeoutError", "decode_label", "decode_labels", "encode_label", "encode_labels",
           "instance_name", "label_key", "request_id", "rule_name", "tag_key"]
