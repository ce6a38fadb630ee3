#!/bin/sh
# Each node serves a page naming itself; the health command checks it is there.
mkdir -p site
echo "{{ node.name }} of {{ infra.name }}" > site/index.html
