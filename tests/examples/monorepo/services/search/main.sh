#!/bin/sh
echo "search service: $(cat /opt/base.txt)"
echo "search v2"
