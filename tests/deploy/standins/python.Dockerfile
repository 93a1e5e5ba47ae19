# Stand-in for python:3.11-slim-bookworm, from Debian's own packages (Python 3.11), for
# machines that cannot pull from an image registry. Built by tests/deploy/docker.py on a
# debootstrap base; laid out like the upstream image: `python`, `python3` and `venv` on
# PATH, C.UTF-8, CA certificates, CMD python3. Never published.
ARG BASE
FROM ${BASE}
# The CA certificates this machine trusts beyond Debian's (a TLS-inspecting proxy's, for
# example); an empty directory elsewhere. pip in the image build reaches PyPI through them.
COPY certs/ /usr/local/share/ca-certificates/
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        ca-certificates python3 python3-venv python-is-python3 \
 && update-ca-certificates \
 && rm -rf /var/lib/apt/lists/*
ENV LANG=C.UTF-8
CMD ["python3"]
