FROM scratch AS Base
COPY a /
