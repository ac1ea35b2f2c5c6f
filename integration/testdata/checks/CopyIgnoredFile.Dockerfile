FROM scratch
COPY ignored.txt /
