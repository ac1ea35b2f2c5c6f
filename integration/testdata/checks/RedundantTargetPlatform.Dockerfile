FROM --platform=$TARGETPLATFORM scratch
COPY a /
