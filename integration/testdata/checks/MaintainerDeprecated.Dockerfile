FROM scratch
MAINTAINER someone <someone@example.com>
COPY a /
