#!/bin/sh
# Serve a page naming this node, on this node's own address: local nodes share the computer's network,
# so each listens on its 127.x address rather than on every address.
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
