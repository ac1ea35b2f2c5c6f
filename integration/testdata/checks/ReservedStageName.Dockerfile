FROM scratch AS scratch
COPY a /
