FROM checkbase
COPY a /
