# glusterfs-csi image: the driver plus what it runs on a node or controller
# (mount.glusterfs and the FUSE client, the gluster CLI, an ssh client, and
# systemd-run to start FUSE clients in a host systemd scope), so hosts need
# no Gluster client packages.
#
#   docker build -t glusterfs-csi:0.1.0 .
#
# Build stage: Debian 12 toolchain, same glibc as the runtime stage.
FROM docker.io/library/rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY proto proto
COPY src src
COPY benches benches
RUN cargo build --release --locked --bin glusterfs-csi

# Runtime stage: Debian 12, glusterfs 10.3 client packages.
FROM docker.io/library/debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      glusterfs-client glusterfs-cli openssh-client mount systemd ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/glusterfs-csi /usr/bin/glusterfs-csi
ENTRYPOINT ["/usr/bin/glusterfs-csi"]
