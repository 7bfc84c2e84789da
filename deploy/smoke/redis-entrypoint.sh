#!/bin/sh
# As the official image: without a config file, Redis would refuse (reset) every connection
# from another container, since it has no password and listens beyond loopback.
if [ "$1" = "redis-server" ]; then
  shift
  set -- redis-server --protected-mode no "$@"
fi
exec "$@"
