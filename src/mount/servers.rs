//! Choosing the server a FUSE mount asks first.
//!
//! mount.glusterfs waits a fixed ~3 s on a dead primary before it tries the
//! backups, so the node checks which servers' glusterd answers and puts
//! those first.

use std::time::Duration;

use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::gluster::transport::GLUSTERD_PORT;

/// `servers` reordered so that ones whose glusterd accepts a connection come
/// first (keeping their relative order). Returns at once when the first
/// server answers; otherwise waits at most `patience` for the others.
pub async fn answering_first(servers: &[String], patience: Duration) -> Vec<String> {
    if servers.len() < 2 {
        return servers.to_vec();
    }
    let mut probes = JoinSet::new();
    for (index, server) in servers.iter().enumerate() {
        let server = server.clone();
        probes.spawn(async move {
            let answered = tokio::time::timeout(
                patience,
                TcpStream::connect((server.as_str(), GLUSTERD_PORT)),
            )
            .await
            .is_ok_and(|r| r.is_ok());
            (index, answered)
        });
    }
    let mut answered = vec![false; servers.len()];
    let mut unanswered = servers.len();
    while let Some(Ok((index, ok))) = probes.join_next().await {
        answered[index] = ok;
        unanswered -= 1;
        if index == 0 && ok {
            probes.abort_all();
            return servers.to_vec();
        }
        if unanswered == 0 {
            break;
        }
    }
    let (up, down): (Vec<_>, Vec<_>) = servers.iter().zip(answered).partition(|(_, ok)| *ok);
    up.into_iter().chain(down).map(|(s, _)| s.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_single_server_is_left_alone() {
        let one = vec!["192.0.2.1".to_string()];
        assert_eq!(answering_first(&one, Duration::from_millis(10)).await, one);
    }

    #[tokio::test]
    async fn nothing_answers_keeps_the_order() {
        // 127.255.255.x: loopback, nothing listens on the glusterd port.
        let servers: Vec<String> = ["127.255.255.1", "127.255.255.2"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            answering_first(&servers, Duration::from_millis(200)).await,
            servers
        );
    }
}
