#!/bin/sh
# Runs on each node before it is destroyed (`cloudherd down`).
echo "goodbye from {{ node.name }}"
