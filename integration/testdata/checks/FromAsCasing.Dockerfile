FROM scratch as base
COPY a /
