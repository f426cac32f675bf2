# farm-cache's image (deploy/k8s/farm-cache.yaml runs it). Built by farm itself, on farm-base
# (deploy/images/make-base.sh: Debian 12 with the libraries the binary links), from a context
# that holds the binary at its root; deploy/images/build.sh assembles it and builds all three:
#   farm build -f deploy/images/farm-cache.Dockerfile -t farm-cache:dev CONTEXT
ARG BASE=farm-base:bookworm
FROM ${BASE}
# The cache needs no privilege: it runs as farm (10001); its state is a volume at --dir.
RUN groupadd --system --gid 10001 farm \
 && useradd --system --uid 10001 --gid farm --home-dir /var/lib/farm-cache --shell /usr/sbin/nologin farm \
 && install -d -o farm -g farm -m 0700 /var/lib/farm-cache
COPY farm-cache /usr/local/bin/farm-cache
LABEL org.opencontainers.image.title="farm-cache" \
      org.opencontainers.image.description="Farm's content-addressed cache (REAPI v2 CAS, action cache, ByteStream)"
USER 10001:10001
WORKDIR /var/lib/farm-cache
# gRPC (REAPI, health), metrics (/metrics, /healthz, /readyz)
EXPOSE 9092 9102
ENTRYPOINT ["/usr/local/bin/farm-cache"]
CMD ["--help"]
