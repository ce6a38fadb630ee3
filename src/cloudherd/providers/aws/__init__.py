"""The ``aws`` provider: EC2 instances through boto3 (imported lazily: ``pip install 'cloudherd[aws]'``).

Settings: ``region`` (else ``AWS_DEFAULT_REGION`` / ``AWS_REGION``, else us-east-1), ``endpoint_url`` (else
boto3 honours ``AWS_ENDPOINT_URL`` itself), ``image`` (default image, ``ubuntu-24.04``), ``subnet_id`` (or
``subnet``), ``vpc``, ``security_group_ids`` (a list, added to ours), ``allow_from`` (CIDR or list of CIDRs the
group's ports are open to, default ``0.0.0.0/0``), ``manage_security_group`` (default true),
``security_group_cleanup_wait`` (seconds, default 120), ``architecture``, ``cloud_init`` (default true, see
below), ``key_name`` (an EC2 key pair of yours for the instances, instead of one imported from cloudherd's
key).  Retries are the rate budget's (``retries``, ``backoff``, ``backoff_max`` of the provider entry).
Credentials come from boto3's own chain, or from the environment variables that ``access_key_id_env`` and
``secret_access_key_env`` name (an Occopus auth-data file puts them there); they never appear in messages.

Decisions:

* Every EC2 call goes through :meth:`AwsProvider._run`: one attempt (boto3's own retries are off,
  ``total_max_attempts=1``, so one attempt is one HTTP request), its failure a typed error carrying EC2's
  code: throttling (``RequestLimitExceeded``, ``Throttling``…) is a :class:`ThrottledError`, 5xx answers and
  dropped connections a :class:`TransientError` — both retried by the rate budget — and capacity, quota, auth
  and invalid requests are never retried (the engine fails over on them).  The error code wins over the HTTP
  status: EC2 sends ``InsufficientInstanceCapacity`` as a 500.
* ``create`` makes all instances in ONE ``run_instances`` call with a ``ClientToken`` (from ``request.token``;
  the rate budget gives every create one before its first attempt), the same on every retry, so a retried
  call cannot launch twice on real EC2.
  Every instance carries the request's tags.  ``Name``: with one instance it is set in the same call; with
  several, ``create_tags`` is called once per instance afterwards (best effort: a failure there is logged, the
  instances are still returned).
* Security group (:meth:`open_ports` / :meth:`close_ports`): each (infra, group) gets
  ``cloudherd-<infra>-<group>`` in the default VPC (or the ``vpc`` / the subnet's VPC), tagged with the group's
  tags and ``cloudherd:managed``, open on TCP 22 and the ports from ``allow_from``; found again by name, newly
  listed ports are added (none are removed).  ``create`` opens it; a group made by a create whose
  ``run_instances`` fails is deleted again.  ``terminate`` closes the cloudherd groups of the terminated
  instances once no instance uses them any more (waiting up to ``security_group_cleanup_wait`` for
  shutting-down ones; best effort, failures are logged).
* Size by need: with no ``request.size`` and a ``request.size_need``, the smallest current-generation,
  on-demand, non-metal type of the image's architecture that fits (``smallest_fitting``).  The types with
  exactly ``ceil(cpus)`` vCPUs are asked for first (a server-side filter, one quick call); only when none fits
  is the whole catalog read.  Both are cached on the provider object.
* Images: an ``ami-...`` id is used as is; an alias (``debian-12``, ``ubuntu-24.04``, ``al2023``, ``al2``)
  is resolved to the newest matching public image of its publisher, for the size's architecture
  (Graviton sizes such as ``t4g.*`` get arm64).
* The login user: with ``cloud_init`` on, user data asks cloud-init to create ``request.ssh_user`` with the
  request's key and password-less sudo, so the same user works on every image; the key is also imported as
  an EC2 key pair (``cloudherd-<12 hex of its sha256>``) for the image's default user.
* ``list`` returns pending, running, stopping and stopped instances (shutting-down ones are on their way
  out and are left out like terminated ones); ``stopping`` is reported as ``stopped``.  One
  ``DescribeInstances`` call per 1000 instances.  ``extra["market"]`` is ``spot`` for a spot instance
  (``InstanceLifecycle``), else ``on-demand``.
* Spot (``request.market == "spot"``): ``InstanceMarketOptions`` of a one-time request, terminated when taken
  back, ``MaxPrice`` from ``request.max_price`` (none: up to the on-demand price); its ``ClientToken`` is the
  request token's spot variant, so the on-demand create the engine falls back to is never held to it.  Spot
  refusals for capacity (``InsufficientInstanceCapacity``, ``InsufficientCapacity``, ``UnfulfillableCapacity``,
  ``SpotMaxPriceTooLow``, ``MaxSpotInstanceCountExceeded``) are :class:`CapacityError`.  ``ended`` describes the
  unlisted ids by an ``instance-id`` filter (unknown ids are no error) and reads ``StateReason``:
  ``Server.SpotInstanceTermination`` is a spot interruption.
"""

from cloudherd.providers.aws.catalog import alias_spec, alias_user
from cloudherd.providers.aws.driver import AwsProvider

_alias_spec = alias_spec  # its name before the driver became a package

__all__ = ["AwsProvider", "alias_spec", "alias_user"]
