FROM scratch
ARG API_TOKEN=x
COPY a /
