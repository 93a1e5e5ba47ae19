# Stand-in for node:20-bookworm-slim, from Debian's own packages (Node.js 18 and npm), for
# machines that cannot pull from an image registry. Built by tests/deploy/docker.py on a
# debootstrap base; laid out like the upstream image: `node` and `npm` on PATH, a `node`
# user (uid 1000), CMD node. Never published: only the page's node_modules leave it.
ARG BASE
FROM ${BASE}
# The CA certificates this machine trusts beyond Debian's; npm reaches its registry
# through them (Node.js reads only its own bundle unless told).
COPY certs/ /usr/local/share/ca-certificates/
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        ca-certificates nodejs npm \
 && update-ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 1000 node \
 && useradd --uid 1000 --gid node --shell /bin/bash --create-home node
ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
CMD ["node"]
