#!/bin/sh
httpd -f -p 8080 -h /www &
pid=$!
trap 'sleep 3; kill $pid' TERM
wait $pid
wait $pid
