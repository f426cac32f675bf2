#!/bin/sh
echo "api service: $(cat /opt/base.txt)"
