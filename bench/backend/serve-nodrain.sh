#!/bin/sh
# Stops the moment SIGTERM arrives (the rule the README asks apps to follow is not kept).
exec httpd -f -p 8080 -h /www
