# Built first, into the namespace, as the docker-image:// context.
FROM busybox
ARG TARGETARCH
RUN echo "image for $TARGETARCH" > /image.txt
