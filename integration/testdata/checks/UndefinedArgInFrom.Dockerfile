FROM --platform=$BULIDPLATFORM scratch
COPY a /
