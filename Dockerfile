# glusterfs-csi image: the driver plus what it runs on a node or controller
# (mount.glusterfs and the FUSE client, the gluster CLI, an ssh client, and
# systemd-run to start FUSE clients in a host systemd scope), so hosts need
# no Gluster client packages.
#
#   docker build -t glusterfs-csi:0.1.0 .
#
# Build arguments, for builders that cannot pull from Docker Hub (the tests
# build it with buildah from a debootstrap base and a binary built outside):
#   BASE_IMAGE    the Debian 12 runtime base;
#   BINARY_IMAGE  where /src/target/release/glusterfs-csi comes from: the
#                 build stage below, or an image that holds a prebuilt one.
ARG RUST_IMAGE=docker.io/library/rust:1.95-slim-bookworm
ARG BASE_IMAGE=docker.io/library/debian:bookworm-slim
ARG BINARY_IMAGE=build

# Build stage: Debian 12 toolchain, same glibc as the runtime stage.
FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto proto
COPY src src
COPY benches benches
RUN cargo build --release --locked --bin glusterfs-csi

FROM ${BINARY_IMAGE} AS binary

# Runtime stage: Debian 12, glusterfs 10.3 client packages.
FROM ${BASE_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      glusterfs-client glusterfs-cli openssh-client mount systemd ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=binary /src/target/release/glusterfs-csi /usr/bin/glusterfs-csi
ENTRYPOINT ["/usr/bin/glusterfs-csi"]
