#!/bin/sh
echo "${GREETING:-Hello} $*"
