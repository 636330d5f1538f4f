//! Choosing the server a FUSE mount asks first.
//!
//! mount.glusterfs waits a fixed ~3 s on a dead primary before it tries the
//! backups, so the node checks which servers' glusterd answers and puts
//! those first.

use std::time::Duration;

use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::gluster::transport::GLUSTERD_PORT;

/// Servers in the order to try them.
#[derive(Debug, PartialEq, Eq)]
pub struct ServerOrder {
    pub servers: Vec<String>,
    /// At least one glusterd accepted a connection (or, with a single
    /// server, it was not asked).
    pub any_answered: bool,
}

/// `servers` reordered so that ones whose glusterd accepts a connection come
/// first (keeping their relative order). Returns at once when the first
/// server answers; otherwise waits at most `patience` for the others.
pub async fn answering_first(servers: &[String], patience: Duration) -> ServerOrder {
    if servers.len() < 2 {
        return ServerOrder {
            servers: servers.to_vec(),
            any_answered: true,
        };
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
            return ServerOrder {
                servers: servers.to_vec(),
                any_answered: true,
            };
        }
        if unanswered == 0 {
            break;
        }
    }
    let (up, down): (Vec<_>, Vec<_>) = servers.iter().zip(answered).partition(|(_, ok)| *ok);
    ServerOrder {
        any_answered: !up.is_empty(),
        servers: up.into_iter().chain(down).map(|(s, _)| s.clone()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn a_single_server_is_left_alone() {
        let one = names(&["192.0.2.1"]);
        let order = answering_first(&one, Duration::from_millis(10)).await;
        assert_eq!(order.servers, one);
    }

    #[tokio::test]
    async fn nothing_answers_keeps_the_order() {
        // 127.255.255.x: loopback, nothing listens on the glusterd port.
        let servers = names(&["127.255.255.1", "127.255.255.2"]);
        let order = answering_first(&servers, Duration::from_millis(200)).await;
        assert_eq!(order.servers, servers);
        assert!(!order.any_answered);
    }

    #[tokio::test]
    async fn a_server_that_answers_goes_first() {
        // All of 127/8 is local: listen as "glusterd" on one address.
        let _glusterd = tokio::net::TcpListener::bind(("127.254.77.3", GLUSTERD_PORT))
            .await
            .unwrap();
        let servers = names(&["127.254.77.1", "127.254.77.2", "127.254.77.3"]);
        let order = answering_first(&servers, Duration::from_millis(300)).await;
        assert_eq!(
            order.servers,
            names(&["127.254.77.3", "127.254.77.1", "127.254.77.2"])
        );
        assert!(order.any_answered);
    }
}
