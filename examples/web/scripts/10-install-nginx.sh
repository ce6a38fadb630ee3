#!/bin/sh
# Install nginx from the distribution's packages, as on a fresh Debian or Ubuntu machine.
set -eu
export DEBIAN_FRONTEND=noninteractive
# A node has no init system: no package may start its service while installing (the usual container
# answer, policy-rc.d exit 101); the next script starts nginx itself.
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
chmod 755 /usr/sbin/policy-rc.d
if ! command -v nginx >/dev/null 2>&1; then
  ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1 || apt-get update -qq
  apt-get install -y -qq --no-install-recommends nginx >/dev/null
fi
nginx -v
