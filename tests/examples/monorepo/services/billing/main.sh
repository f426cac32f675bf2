#!/bin/sh
echo "billing service: $(cat /opt/base.txt)"
