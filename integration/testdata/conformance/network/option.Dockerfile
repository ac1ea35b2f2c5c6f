# Built with --network none: every RUN step is cut off.
FROM busybox
# busybox-static's wget (glibc) crashes without an nsswitch.conf, and with -T.
RUN echo 'hosts: files dns' > /etc/nsswitch.conf
ARG PORT
RUN ls /sys/class/net > /interfaces.txt && \
    (wget -q -O - http://127.0.0.1:$PORT/ 2>/dev/null || echo unreachable) > /wget.txt
