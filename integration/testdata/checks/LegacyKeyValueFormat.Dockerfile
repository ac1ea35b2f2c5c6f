FROM scratch
ENV color blue
COPY a /
