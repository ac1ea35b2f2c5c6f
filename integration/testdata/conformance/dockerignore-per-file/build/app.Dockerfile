# Built with -f build/app.Dockerfile: app.Dockerfile.dockerignore next to it
# replaces the context's .dockerignore, which would drop a.txt.
FROM scratch
COPY . /ctx/
