# Stand-in for caddy:2, from Debian's caddy package (2.6), for machines that cannot pull
# from an image registry. Built by tests/deploy/docker.py on a debootstrap base; laid out
# like the upstream image: /usr/bin/caddy, the Caddyfile at /etc/caddy/Caddyfile, state in
# /data and /config (XDG_DATA_HOME, XDG_CONFIG_HOME), runs as root from /srv with the same
# CMD, so compose.yaml's caddy service runs it unchanged. Never published.
ARG BASE
FROM ${BASE}
COPY certs/ /usr/local/share/ca-certificates/
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        ca-certificates caddy \
 && update-ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /config/caddy /data/caddy /etc/caddy /usr/share/caddy /srv
ENV XDG_CONFIG_HOME=/config \
    XDG_DATA_HOME=/data
EXPOSE 80 443 443/udp 2019
WORKDIR /srv
CMD ["caddy", "run", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile"]
