# One image for all three roles (core, extension, proxy) and the test backend.
# BASE defaults to the official Python image; where no registry is reachable,
# scripts/build-images passes a local Debian base made with debootstrap.
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}

# nginx with the stream module (TLS SNI routing) and the Lua module (upstream servers changed at
# run time), HAProxy (the other proxy kind), openssl (validation stand-ins), CA certificates.
RUN if ! command -v nginx >/dev/null || [ ! -e /usr/lib/nginx/modules/ngx_stream_module.so ] \
      || [ ! -e /usr/lib/nginx/modules/ngx_http_lua_module.so ] || ! command -v haproxy >/dev/null; then \
      apt-get update && apt-get install -y --no-install-recommends nginx libnginx-mod-stream libnginx-mod-http-lua \
         haproxy openssl ca-certificates \
      && rm -rf /var/lib/apt/lists/*; \
    fi \
 && (id nginx >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin nginx) \
 && rm -f /etc/nginx/sites-enabled/default

# Wheels are built on the host (scripts/build-images), so the image build needs no network.
COPY build/wheels /tmp/wheels
RUN python3 -m venv /opt/interlock \
 && /opt/interlock/bin/pip install --no-cache-dir --no-index --find-links /tmp/wheels interlock \
 && rm -rf /tmp/wheels \
 && mkdir -p /var/lib/interlock

ENV PATH=/opt/interlock/bin:$PATH PYTHONUNBUFFERED=1
ENTRYPOINT ["interlock"]
CMD ["--help"]
