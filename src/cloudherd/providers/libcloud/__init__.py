"""The ``libcloud`` provider: the long tail of clouds through Apache Libcloud (``pip install 'cloudherd[libcloud]'``).

Libcloud is imported lazily, when a provider of this type is made.  Settings:

* ``driver`` (required): a libcloud compute provider name as :func:`libcloud.compute.providers.get_driver` knows
  it (``openstack``, ``digitalocean``, ``linode``, ``vultr``, ``dummy``…), or ``package.module:Class`` for a
  driver class of your own.  An unknown name is an :class:`UnknownProviderError` that lists close matches.
* The driver's own constructor arguments: ``args: [...]`` are passed positionally; without ``args``, ``key`` and
  then ``secret`` (when given) are the first two positional arguments, as every libcloud driver takes them.
  **Every other setting not listed below is passed as a keyword argument** (``region``, ``host``, ``port``,
  ``secure``, ``ex_force_auth_url``, ``ex_tenant_name``…); ``kwargs: {...}`` adds keyword arguments whose names
  clash with ours.  A setting ``NAME_env: VAR`` reads setting ``NAME`` from the environment variable ``VAR``
  (``secret_env: OS_PASSWORD``), so that secrets stay out of spec files.
* ``project_id`` (openstack): the token is scoped by the project's id, which libcloud alone cannot do (it
  scopes by ``ex_tenant_name``); an Occopus ``nova`` resource's ``project_id`` comes here.
* Ours: ``image`` and ``size`` (defaults for requests that name none; a request's size need picks the
  smallest fitting size, and with neither the smallest size is used; sizes and images are found by id, else by
  name), ``location`` (id or name, passed to ``create_node``), ``create_options`` (more ``create_node`` keyword
  arguments, e.g. ``{ex_keyname: mykey}``), ``tagging`` (``auto`` | ``metadata`` | ``tags`` | ``name``, see
  below), ``concurrency`` (parallel calls, default 8), ``pool`` (driver objects used in parallel, default
  ``concurrency``; 1 for the in-memory ``dummy`` driver), ``bulk`` (see below), ``cloud_init`` (default true),
  ``ssh_user`` (the login user when cloud-init does not make one).

For example (openstack's factory needs ``api_version: "2.0"`` for the nova 2.x + glance v2 driver)::

    providers:
      mycloud:
        type: libcloud
        driver: openstack
        api_version: "2.0"
        key: alice
        secret_env: OS_PASSWORD
        ex_force_auth_url: https://keystone.example.com:5000
        ex_force_auth_version: 3.x_password
        ex_tenant_name: demo
        ex_domain_name: Default
        image: debian-12
        size: m1.small

Decisions:

* Libcloud is blocking, and one driver object must not serve two calls at once: calls run in worker threads
  (``asyncio.to_thread``), each on a driver object borrowed from a small pool.
* ``create`` makes one ``create_node`` call per instance, at most ``concurrency`` at a time, which honours the
  requested names.  Drivers with a bulk create (``create_node(ex_mincount=, ex_maxcount=)``, the EC2 family) get
  ONE call when no names were asked for, or always with ``bulk: true`` (their nodes then share one name).
  When some creates of a request fail, the nodes it did make are destroyed and the first error is raised.
* Tags, by ``tagging`` (``auto`` picks ``metadata`` when ``create_node`` takes ``ex_metadata``, else ``name``):
  ``metadata`` / ``tags`` pass the tags as ``ex_metadata`` / ``ex_tags`` and read them back from the node's
  ``extra`` (``metadata``, ``tags`` or ``labels``); ``name`` encodes infra and group in the node's name,
  ``ch--<infra>--<group>--<name>``, which ``list`` decodes (such nodes carry only those two tags, so a filter on
  any other tag does not match them).  Tags this provider object asked for are also remembered in memory, for
  drivers that keep neither (``dummy`` ignores names and metadata).  Keys go to the cloud as they are
  (``cloudherd:infra``): clouds whose metadata keys cannot hold ``:`` need ``tagging: name``.
* With ``request.token`` and a driver that stores tags, a retried create returns the first call's instances; with
  name tagging, a requested name that already exists is not created again.
* The SSH key: drivers that take ``auth=NodeAuthSSHKey`` get it; else drivers that take user data get a
  cloud-config that makes ``request.ssh_user`` with the key (``cloud_init: false`` turns this off).
* Ports: ``supports("ports")`` is False — security groups are driver specific (use ``create_options``);
  ``request.ports`` are not opened (a warning says so) and ``open_ports`` is an InvalidRequestError.
* States: running/rebooting/… → running, pending/starting → pending, stopping/stopped/suspended/paused →
  stopped, error → dead, terminated → terminated (left out of ``list``), unknown → pending.
* Errors: ``InvalidCredsError``/401/403 → AuthError, ``RateLimitReachedError``/429/413 → ThrottledError,
  404 → NotFoundError, quota texts → QuotaError, "no valid host"/capacity texts → CapacityError, other 4xx →
  InvalidRequestError, 5xx and dropped connections → TransientError (throttling and transient errors are
  retried by the rate budget; this driver makes one attempt per call).  Messages are one line and never
  contain a credential: every secret-looking setting value is masked.
"""

from cloudherd.providers.libcloud.driver import LibcloudProvider

__all__ = ["LibcloudProvider"]
