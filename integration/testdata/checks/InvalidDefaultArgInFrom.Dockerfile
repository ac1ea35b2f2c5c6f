ARG TAG
FROM busybox:${TAG}
COPY a /
