FROM scratch
COPY a \

  /
