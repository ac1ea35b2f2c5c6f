FROM scratch
COPY a /
CMD run-it
