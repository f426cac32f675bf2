#!/bin/sh
echo "search service: $(cat /opt/base.txt)"
