FROM scratch
COPY $undefined /
