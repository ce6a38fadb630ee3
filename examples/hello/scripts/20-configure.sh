#!/bin/sh
# Runs second; every node knows its siblings through `nodes`.
set -eu
cat > peers.txt <<PEERS
{% for peer in nodes.web %}{{ peer.name }} {{ peer.address }}
{% endfor %}PEERS
echo "{{ node.name }} knows $(wc -l < peers.txt) peers (group $CLOUDHERD_GROUP, port base $PORT_BASE)"
