FROM scratch AS base
COPY a /
FROM scratch AS base
COPY a /
