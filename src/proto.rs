//! Generated protobuf and gRPC code, fenced off from hand-written code.

#[allow(clippy::all, clippy::pedantic, missing_docs, dead_code)]
pub mod csi {
    tonic::include_proto!("csi.v1");
}

#[allow(clippy::all, clippy::pedantic, missing_docs, dead_code)]
pub mod brick_agent {
    tonic::include_proto!("glusterfs_csi.brick.v1");
}
