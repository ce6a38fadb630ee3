#!/bin/sh
# Runs first on every node, in the node's work folder.  Jinja2 renders the template before upload.
set -eu
mkdir -p site
echo "{{ variables.greeting }}: {{ node.name }} ({{ node.address }})" > site/index.html
echo "installed on {{ node.name }}"
