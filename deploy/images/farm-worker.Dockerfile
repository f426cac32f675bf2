# farm-worker's image (deploy/k8s/farm-worker.yaml runs it, privileged: the sandbox makes
# namespaces, overlayfs mounts, cgroups and nftables tables). Built by farm itself, on
# farm-base (deploy/images/make-base.sh: Debian 12 with the libraries the binary links, nft
# and openssl), from a context holding the binary and deploy/make-certs.sh at its root;
# deploy/images/build.sh assembles it and builds all three:
#   farm build -f deploy/images/farm-worker.Dockerfile -t farm-worker:dev CONTEXT
ARG BASE=farm-base:bookworm
FROM ${BASE}
# make-certs.sh enrolls a pod: deploy/k8s/farm-worker.yaml's init container issues the pod's
# worker certificate (CN = pod name) from the worker CA with it.
COPY make-certs.sh /usr/local/bin/farm-make-certs
COPY farm-worker /usr/local/bin/farm-worker
COPY farm-sandbox /usr/local/bin/farm-sandbox
LABEL org.opencontainers.image.title="farm-worker" \
      org.opencontainers.image.description="Farm's worker: runs build steps for farm-scheduler in its sandbox"
# Root: namespaces, overlayfs, chown (README, farm-worker). --dir must be a volume, not the
# container's own (overlay) file system: overlayfs cannot stack its upper layers on overlayfs.
WORKDIR /var/lib/farm-worker
# metrics (/metrics, /healthz, /readyz); the worker listens for nothing else (it dials out)
EXPOSE 9103
ENTRYPOINT ["/usr/local/bin/farm-worker"]
CMD ["--help"]
