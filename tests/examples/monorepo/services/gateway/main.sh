#!/bin/sh
echo "gateway service: $(cat /opt/base.txt)"
