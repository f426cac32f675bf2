# farm-scheduler's image (deploy/k8s/farm-scheduler.yaml runs it). Built by farm itself, on
# farm-base (deploy/images/make-base.sh: Debian 12 with the libraries the binary links, and
# the CA certificates for registries), from a context that holds the binary at its root;
# deploy/images/build.sh assembles it and builds all three:
#   farm build -f deploy/images/farm-scheduler.Dockerfile -t farm-scheduler:dev CONTEXT
ARG BASE=farm-base:bookworm
FROM ${BASE}
# The scheduler needs no privilege (it runs no steps): it runs as farm (10001); its state
# (builds, queue, leases, image store, secret.key) is a volume at --dir.
RUN groupadd --system --gid 10001 farm \
 && useradd --system --uid 10001 --gid farm --home-dir /var/lib/farm-scheduler --shell /usr/sbin/nologin farm \
 && install -d -o farm -g farm -m 0700 /var/lib/farm-scheduler
COPY farm-scheduler /usr/local/bin/farm-scheduler
LABEL org.opencontainers.image.title="farm-scheduler" \
      org.opencontainers.image.description="Farm's scheduler: plans builds and dispatches their steps to farm-workers"
USER 10001:10001
WORKDIR /var/lib/farm-scheduler
# gRPC (farm.v1.Scheduler, farm.v1.WorkerHub, health), metrics (/metrics, /healthz, /readyz)
EXPOSE 9091 9101
ENTRYPOINT ["/usr/local/bin/farm-scheduler"]
CMD ["--help"]
