#!/bin/sh
# Serve a page naming this node, on this node's own address (a sandboxed node has a network of its own and
# could listen everywhere; an unsandboxed one shares the computer's, where the node's address is its own).
set -eu
cat > /etc/nginx/sites-enabled/default <<'CONF'
server {
    listen {{ node.address }}:80;
    root /var/www/html;
    location / { try_files $uri $uri/ =404; }
}
CONF
echo "hello from {{ node.name }} ($(hostname))" > /var/www/html/index.html
nginx -t -q
if [ -s /run/nginx.pid ] && kill -0 "$(cat /run/nginx.pid)" 2>/dev/null; then nginx -s reload; else nginx; fi
