FROM scratch
WORKDIR app
COPY a .
