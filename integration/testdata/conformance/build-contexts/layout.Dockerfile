# Built first, exported with -o type=oci and unpacked, as the oci-layout:// context.
FROM scratch
ARG TARGETARCH
COPY <<EOF /layout.txt
layout for ${TARGETARCH}
EOF
