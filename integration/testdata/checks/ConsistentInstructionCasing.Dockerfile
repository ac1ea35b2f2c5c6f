FROM scratch
COPY a /
copy a /b
