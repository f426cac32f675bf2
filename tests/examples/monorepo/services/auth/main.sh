#!/bin/sh
echo "auth service: $(cat /opt/base.txt)"
