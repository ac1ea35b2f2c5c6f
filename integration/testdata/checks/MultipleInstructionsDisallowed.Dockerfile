FROM scratch
COPY a /
ENTRYPOINT ["/a"]
ENTRYPOINT ["/b"]
